"""Metric sets (luz's ``luz_metric_set``): which metrics each phase computes."""

from __future__ import annotations

from ..checks import check_choice
from .adapters import as_metric
from .base import LossAverage

__all__ = ["MetricSet", "as_metric_set"]


def _metric_list(value, argname):
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        return as_metric(value, f"`{argname}`")
    return [m for i, item in enumerate(value) for m in as_metric(item, f"`{argname}[{i}]`")]


class MetricSet:
    """Metrics for both phases (luz's ``luz_metric_set``).

    ``metrics`` are used in training and validation, ``train_metrics`` and
    ``valid_metrics`` only in that phase. :meth:`for_phase` builds fresh
    instances with :class:`LossAverage` first.

    >>> from pyluz.metrics import Accuracy, MAE
    >>> ms = MetricSet([Accuracy()], valid_metrics=MAE())
    >>> [m.name for m in ms.for_phase("train")]
    ['Loss', 'Acc']
    >>> [m.name for m in ms.for_phase("valid")]
    ['Loss', 'Acc', 'MAE']
    """

    def __init__(self, metrics=None, train_metrics=None, valid_metrics=None):
        self.metrics = _metric_list(metrics, "metrics")
        self.train_metrics = _metric_list(train_metrics, "train_metrics")
        self.valid_metrics = _metric_list(valid_metrics, "valid_metrics")

    def for_phase(self, phase: str) -> list:
        if phase == "train":
            extra = self.train_metrics
        elif phase == "valid":
            extra = self.valid_metrics
        else:
            check_choice(phase, "phase", ("train", "valid"), owner="MetricSet.for_phase")
        return [LossAverage(), *(m.fresh() for m in self.metrics), *(m.fresh() for m in extra)]

    def __repr__(self) -> str:
        return (
            f"MetricSet(metrics={self.metrics!r}, train_metrics={self.train_metrics!r}, "
            f"valid_metrics={self.valid_metrics!r})"
        )


def as_metric_set(x) -> MetricSet:
    """Normalise what a user passes as ``metrics`` into a :class:`MetricSet`: pyluz metrics,
    torchmetrics metrics and functions ``fn(preds, target)`` (see :mod:`pyluz.metrics.adapters`).

    >>> from pyluz.metrics import Accuracy
    >>> len(as_metric_set(None).metrics), len(as_metric_set(Accuracy()).metrics)
    (0, 1)
    """
    if x is None:
        return MetricSet()
    if isinstance(x, MetricSet):
        return x
    return MetricSet(x)  # a metric, a function or a list of them; anything else is an error naming `metrics`
