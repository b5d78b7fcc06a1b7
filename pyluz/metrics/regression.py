"""Regression metrics (luz_metric_mae, luz_metric_mse, luz_metric_rmse)."""

from __future__ import annotations

import math

import torch

from .base import Metric, host_ratio, same_numel

__all__ = ["MAE", "MSE", "RMSE"]


class MAE(Metric):
    """Mean absolute error ("MAE") over all elements.

    ``preds`` and ``target`` need the same number of elements (``(B, 1)``
    and ``(B,)`` are fine; they are flattened, never broadcast).

    >>> import torch
    >>> m = MAE()
    >>> m.update(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]))
    >>> m.compute()
    1.5
    """

    abbrev = "MAE"

    def __init__(self):
        self.sum_error = torch.zeros((), dtype=torch.float64)
        self.count = torch.zeros((), dtype=torch.int64)

    @staticmethod
    def _error(diff: torch.Tensor) -> torch.Tensor:
        return diff.abs()

    def update(self, preds, target):
        preds, target = same_numel(type(self).__name__, preds, target)
        dtype = self.sum_error.dtype
        diff = preds.to(dtype) - target.to(dtype)
        self.sum_error += self._error(diff).sum()
        self.count += diff.numel()

    def compute(self):
        return host_ratio(self.sum_error, self.count)


class MSE(MAE):
    """Mean squared error ("MSE") over all elements.

    >>> import torch
    >>> m = MSE()
    >>> m.update(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]))
    >>> m.compute()
    2.5
    """

    abbrev = "MSE"

    @staticmethod
    def _error(diff: torch.Tensor) -> torch.Tensor:
        return diff.square()


class RMSE(MSE):
    """Root mean squared error ("RMSE"): ``sqrt`` of :class:`MSE`.

    >>> import torch
    >>> m = RMSE()
    >>> m.update(torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0]))
    >>> round(m.compute(), 4)
    3.5355
    """

    abbrev = "RMSE"

    def compute(self):
        return math.sqrt(super().compute())
