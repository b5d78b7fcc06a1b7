"""Accuracy metrics (luz_metric_accuracy, luz_metric_binary_accuracy[_with_logits])."""

from __future__ import annotations

import torch

from ..checks import check_int, check_real
from .base import (
    Metric,
    check_class_scores,
    check_tensor,
    class_index_hint,
    count_not_binary,
    count_outside,
    host_ratio,
    raise_bad_targets,
    same_numel,
)

__all__ = ["Accuracy", "BinaryAccuracy", "BinaryAccuracyWithLogits"]


class Accuracy(Metric):
    """Multiclass accuracy ("Acc"): share of ``argmax(preds, 1)`` equal to ``target``.

    ``preds`` has shape ``(batch, num_classes, ...)`` (scores, logits or
    probabilities); ``target`` holds class indices in the ``index_base``
    convention (0 for Python, 1 for R).

    >>> import torch
    >>> m = Accuracy()
    >>> m.update(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
    >>> m.compute()
    0.5
    >>> r = Accuracy(index_base=1)
    >>> r.update(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([2, 1]))
    >>> r.compute()
    1.0
    """

    abbrev = "Acc"

    def __init__(self, index_base=0):
        self.index_base = check_int(index_base, "index_base", "Accuracy", choices=(0, 1))
        self.correct = torch.zeros((), dtype=torch.int64)
        self.total = torch.zeros((), dtype=torch.int64)
        self.bad_targets = torch.zeros((), dtype=torch.int64)  # checked at compute (see base.count_outside)
        self.num_classes = None

    def update(self, preds, target):
        owner = type(self).__name__
        preds, target = check_class_scores(owner, preds, target)
        self.num_classes = preds.shape[1]
        self.bad_targets += count_outside(target, self.index_base, self.num_classes + self.index_base)
        pred_idx = preds.argmax(dim=1)
        if target.shape != pred_idx.shape:
            if target.numel() != pred_idx.numel():
                raise ValueError(
                    f"{owner}: `target` must hold one class index per sample (shape "
                    f"{tuple(pred_idx.shape)}), got shape {tuple(target.shape)}"
                )
            target = target.reshape(pred_idx.shape)
        if self.index_base:
            pred_idx = pred_idx + self.index_base
        self.correct += (pred_idx == target).sum()
        self.total += pred_idx.numel()

    def compute(self):
        raise_bad_targets(
            type(self).__name__,
            self.bad_targets,
            f"class indices in {self.index_base}..{(self.num_classes or 0) + self.index_base - 1}",
            class_index_hint(self.index_base, self.num_classes),
        )
        return host_ratio(self.correct, self.total)


class BinaryAccuracy(Metric):
    """Binary accuracy ("Acc"): share of ``(preds > threshold) == target``.

    ``preds`` are probabilities; ``target`` holds 0/1 (any dtype, or bool).

    >>> import torch
    >>> m = BinaryAccuracy(threshold=0.5)
    >>> m.update(torch.tensor([0.2, 0.7, 0.9]), torch.tensor([0.0, 1.0, 0.0]))
    >>> round(m.compute(), 4)
    0.6667
    """

    abbrev = "Acc"

    def __init__(self, threshold=0.5):
        self.threshold = check_real(threshold, "threshold", type(self).__name__, lo=0.0, hi=1.0)
        self.correct = torch.zeros((), dtype=torch.int64)
        self.total = torch.zeros((), dtype=torch.int64)
        self.bad_targets = torch.zeros((), dtype=torch.int64)  # checked at compute (see base.count_outside)

    def update(self, preds, target):
        preds, target = same_numel(type(self).__name__, preds, target)
        self.bad_targets += count_not_binary(target)
        hits = (preds > self.threshold).to(target.dtype) == target
        self.correct += hits.sum()
        self.total += hits.numel()

    def compute(self):
        raise_bad_targets(
            type(self).__name__,
            self.bad_targets,
            "0 or 1",
            " (binary accuracy needs 0/1 targets; for class indices use Accuracy)",
        )
        return host_ratio(self.correct, self.total)


class BinaryAccuracyWithLogits(BinaryAccuracy):
    """Binary accuracy on logits ("Acc"): ``sigmoid`` first, then :class:`BinaryAccuracy`.

    >>> import torch
    >>> m = BinaryAccuracyWithLogits()
    >>> m.update(torch.tensor([-2.0, 3.0]), torch.tensor([0, 1]))
    >>> m.compute()
    1.0
    """

    def update(self, preds, target):
        preds = check_tensor(type(self).__name__, "preds", preds)
        super().update(torch.sigmoid(preds), target)
