"""Area under the ROC curve (luz_metric_binary_auroc, luz_metric_multiclass_auroc).

Like luz, scores are not stored: each batch is counted against a fixed,
sorted threshold grid ``[-eps, t_1, ..., t_k, 1 + eps]``. The state is, per
class, a histogram over the ``T + 1`` gaps between thresholds (how many
positives / negatives fall in each), filled with ``searchsorted`` +
``index_add_`` - O(N log T), additive (DDP-safe) and sync-free. From the
histograms ``compute`` derives luz's counts: ``TP[t] = #pos with score > t``
and ``TN[t] = #neg with score <= t`` (luz calls the latter "false_positives").
"""

from __future__ import annotations

import numbers

import torch

from ..checks import check_bool, check_choice, check_int
from ..checks import is_bool as _is_bool
from .base import Metric, check_class_scores, class_index_hint, count_outside, raise_bad_targets, same_numel

__all__ = ["BinaryAUROC", "MulticlassAUROC"]

_EPS = torch.finfo(torch.float32).eps
AVERAGES = ("micro", "macro", "weighted", "none")


def threshold_grid(owner, num_thresholds, thresholds) -> torch.Tensor:
    """The float32 threshold grid, endpoints ``-eps`` and ``1 + eps`` included.

    Without ``thresholds``: ``num_thresholds - 2`` interior points evenly
    spaced in (0, 1), i.e. ``i / (num_thresholds - 1)`` for
    ``i = 1 .. num_thresholds - 2`` (``num_thresholds`` values in total).
    """
    n = check_int(num_thresholds, "num_thresholds", owner, min_value=2)
    if thresholds is None:
        interior = torch.arange(1, n - 1, dtype=torch.float64) / (n - 1)
    else:
        interior = torch.tensor(sorted(_threshold_values(owner, thresholds)), dtype=torch.float64)
    return torch.cat(
        [torch.tensor([-_EPS], dtype=torch.float64), interior, torch.tensor([1.0 + _EPS], dtype=torch.float64)]
    ).to(torch.float32)


def _threshold_values(owner, thresholds) -> list:
    what = f"{owner}: `thresholds` must be None or a non-empty 1-d sequence of finite numbers"
    if isinstance(thresholds, torch.Tensor):
        if thresholds.ndim > 1:
            raise ValueError(f"{what}, got a tensor of shape {tuple(thresholds.shape)}")
        if thresholds.is_complex() or thresholds.dtype == torch.bool:
            raise ValueError(f"{what}, got a {thresholds.dtype} tensor")
        values = thresholds.detach().reshape(-1).cpu().double().tolist()
    elif hasattr(thresholds, "tolist") and hasattr(thresholds, "ndim"):  # numpy array
        if thresholds.ndim > 1:
            raise ValueError(f"{what}, got an array of shape {tuple(thresholds.shape)}")
        values = list(thresholds.reshape(-1).tolist())
    elif isinstance(thresholds, (list, tuple)):
        values = list(thresholds)
    else:
        raise ValueError(f"{what}, got {type(thresholds).__name__}")
    if not values:
        raise ValueError(f"{what}, got an empty sequence")
    for v in values:
        if (
            not isinstance(v, numbers.Real)
            or _is_bool(v)
            or not (float(v) == float(v))
            or abs(float(v)) == float("inf")
        ):
            raise ValueError(f"{what}, got element {v!r}")
    return [float(v) for v in values]


def _bucket(thresholds: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Index ``k`` = number of thresholds strictly below each score, so that
    ``score > thresholds[t]`` iff ``t < k``. NaN scores count as below all
    thresholds (as ``nan > t`` is False in luz)."""
    if scores.dtype == torch.float64:
        thresholds = thresholds.to(torch.float64)
    else:
        scores = scores.to(torch.float32)
    k = torch.searchsorted(thresholds, scores.contiguous())
    return k.masked_fill_(scores.isnan(), 0)


def _rates(pos: torch.Tensor, neg: torch.Tensor):
    """TPR and TNR per threshold from ``[rows, T + 1]`` histograms (float64, CPU)."""
    pos = pos.detach().cpu().to(torch.float64)
    neg = neg.detach().cpu().to(torch.float64)
    n_pos = pos.sum(-1, keepdim=True)
    n_neg = neg.sum(-1, keepdim=True)
    tp = n_pos - pos.cumsum(-1)[..., :-1]
    tn = neg.cumsum(-1)[..., :-1]
    return tp / n_pos, tn / n_neg, n_pos.squeeze(-1)


class _AUROCBase(Metric):
    abbrev = "AUC"
    _constant_attrs = ("thresholds",)

    def _setup(self, num_thresholds, thresholds, from_logits):
        owner = type(self).__name__
        self.thresholds = threshold_grid(owner, num_thresholds, thresholds)
        self.num_thresholds = int(self.thresholds.numel())
        self.from_logits = check_bool(from_logits, "from_logits", owner)


class BinaryAUROC(_AUROCBase):
    """Binary area under the ROC curve ("AUC"), luz's thresholded estimate.

    Scores (probabilities, or logits with ``from_logits=True``) are counted
    against ``num_thresholds`` thresholds (or the given ``thresholds`` plus
    two endpoints); the AUC is luz's right Riemann sum
    ``sum(TPR * diff(TNR, prepend=0))``. Passing every distinct score as
    ``thresholds`` gives the exact AUC when positives and negatives share no
    score. ``target`` holds 0/1; other values are ignored.

    >>> import torch
    >>> y = torch.tensor([1, 1, 1, 0, 0, 0])
    >>> p = torch.tensor([0.9, 0.8, 0.4, 0.5, 0.3, 0.2])
    >>> m = BinaryAUROC(thresholds=p.tolist())
    >>> m.update(p[:3], y[:3]); m.update(p[3:], y[3:])
    >>> round(m.compute(), 4)
    0.8889
    """

    def __init__(self, num_thresholds=200, thresholds=None, from_logits=False):
        self._setup(num_thresholds, thresholds, from_logits)
        self.pos_counts = torch.zeros(self.num_thresholds + 1, dtype=torch.int64)
        self.neg_counts = torch.zeros(self.num_thresholds + 1, dtype=torch.int64)

    def update(self, preds, target):
        preds, target = same_numel(type(self).__name__, preds, target)
        if self.from_logits:
            preds = torch.sigmoid(preds)
        k = _bucket(self.thresholds, preds)
        self.pos_counts.index_add_(0, k, (target == 1).to(torch.int64))
        self.neg_counts.index_add_(0, k, (target == 0).to(torch.int64))

    def compute(self):
        tpr, tnr, _ = _rates(self.pos_counts, self.neg_counts)
        step = torch.diff(tnr, dim=-1, prepend=torch.zeros(1, dtype=tnr.dtype))
        return (tpr * step).sum().item()


class MulticlassAUROC(_AUROCBase):
    """Multiclass area under the ROC curve ("AUC"), one-vs-rest.

    ``preds`` is ``(batch, num_classes, ...)`` probabilities (or logits with
    ``from_logits=True``: softmax over dim 1); ``target`` holds class indices
    in the ``index_base`` convention. ``average``:

    - ``"micro"``: all classes stacked into one binary problem (sklearn's
      ``roc_auc_score(one_hot, probs, average="micro")``);
    - ``"macro"``: mean of the per-class AUCs;
    - ``"weighted"``: per-class AUCs weighted by class frequency;
    - ``"none"``: the list of per-class AUCs.

    Per-class curves use luz's trapezoid rule. The state is sized at the
    first update from ``preds.shape[1]`` unless ``num_classes`` is given.

    >>> import torch
    >>> p = torch.tensor([[0.1, 0.9], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5], [0.7, 0.3], [0.8, 0.2]])
    >>> y = torch.tensor([1, 1, 1, 0, 0, 0])
    >>> m = MulticlassAUROC(thresholds=p.flatten().tolist(), average="macro")
    >>> m.update(p, y)
    >>> round(m.compute(), 4)
    0.8889
    """

    def __init__(
        self, num_thresholds=200, thresholds=None, from_logits=False, average="micro", index_base=0, num_classes=None
    ):
        owner = type(self).__name__
        self._setup(num_thresholds, thresholds, from_logits)
        self.average = check_choice(average, "average", AVERAGES, owner)
        self.index_base = check_int(index_base, "index_base", owner, choices=(0, 1))
        self.num_classes = None
        if num_classes is not None:
            self._init_state(check_int(num_classes, "num_classes", owner, min_value=1), "cpu")

    def _init_state(self, num_classes, device):
        self.num_classes = num_classes
        rows = 1 if self.average == "micro" else num_classes
        shape = (rows, self.num_thresholds + 1)
        self.pos_counts = torch.zeros(shape, dtype=torch.int64, device=device)
        self.neg_counts = torch.zeros(shape, dtype=torch.int64, device=device)
        self.bad_targets = torch.zeros((), dtype=torch.int64, device=device)  # checked at compute

    def update(self, preds, target):
        owner = type(self).__name__
        preds, target = check_class_scores(owner, preds, target)
        num_classes = preds.shape[1]
        if self.num_classes is None:
            self._init_state(num_classes, preds.device)
        elif num_classes != self.num_classes:
            raise ValueError(f"{owner}: `preds` must have {self.num_classes} classes in dim 1, got {num_classes}")
        if self.from_logits:
            if preds.dtype != torch.float64:
                preds = preds.to(torch.float32)
            preds = torch.softmax(preds, dim=1)
        scores = preds.movedim(1, -1).reshape(-1, num_classes)
        if target.numel() != scores.shape[0]:
            raise ValueError(
                f"{owner}: `target` must hold one class index per sample ({scores.shape[0]} values), "
                f"got shape {tuple(target.shape)}"
            )
        labels = target.reshape(-1, 1)
        self.bad_targets += count_outside(labels, self.index_base, num_classes + self.index_base)
        if self.index_base:
            labels = labels - self.index_base
        classes = torch.arange(num_classes, device=labels.device)
        is_pos = labels == classes  # (N, C) one-hot
        if self.average == "micro":
            scores = scores.reshape(-1, 1)
            is_pos = is_pos.reshape(-1, 1)
        rows = scores.shape[1]
        offsets = torch.arange(rows, device=scores.device) * (self.num_thresholds + 1)
        index = (_bucket(self.thresholds, scores) + offsets).reshape(-1)
        pos = is_pos.reshape(-1).to(torch.int64)
        self.pos_counts.view(-1).index_add_(0, index, pos)
        self.neg_counts.view(-1).index_add_(0, index, 1 - pos)

    def compute(self):
        if self.num_classes is None:
            return float("nan")
        raise_bad_targets(
            type(self).__name__,
            self.bad_targets,
            f"class indices in {self.index_base}..{self.num_classes + self.index_base - 1}",
            class_index_hint(self.index_base, self.num_classes),
        )
        tpr, tnr, n_pos = _rates(self.pos_counts, self.neg_counts)
        step = torch.diff(tnr, dim=-1, prepend=torch.zeros(tnr.shape[0], 1, dtype=tnr.dtype))
        aucs = ((tpr * step).sum(-1) + (tpr[:, :-1] * step[:, 1:]).sum(-1)) / 2
        if self.average == "none":
            return aucs.tolist()
        if self.average == "micro":
            return aucs[0].item()
        if self.average == "macro":
            return aucs.mean().item()
        weights = n_pos / n_pos.sum()
        return (weights * aucs).sum().item()
