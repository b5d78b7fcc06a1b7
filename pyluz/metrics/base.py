"""Metric base class, the loss average, metric sets and shared helpers.

A metric keeps its state as tensors on the training device. ``update`` only
queues device work (no ``.item()``, no host sync); ``compute`` is the one
place that reads values back to the host.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping

import torch

from ..checks import is_bool as _is_bool
from ..checks import message
from ..nested import map_tensors

__all__ = [
    "Metric",
    "LossAverage",
    "MetricSet",
    "as_metric_set",
    "metric_keys",
    "format_metric_value",
]

# Instance attributes that are never treated as metric state.
_NOT_STATE = frozenset({"ctx", "_ctor_args", "_ctor_kwargs"})


# --------------------------------------------------------------------------
# argument validation helpers (shared by the built-ins)
# --------------------------------------------------------------------------

def check_tensor(owner, name, value):
    """`value` detached, or TypeError naming `owner` and `name`."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(message(name, "a torch.Tensor", type(value).__name__, owner))
    return value.detach()


def check_class_scores(owner, preds, target):
    """(preds, target) of a class-index metric: preds shaped (batch, num_classes, ...)."""
    preds = check_tensor(owner, "preds", preds)
    target = check_tensor(owner, "target", target)
    if preds.ndim < 2:
        raise ValueError(f"{owner}: `preds` must have shape (batch, num_classes, ...), got {tuple(preds.shape)}")
    return preds, target


def same_numel(owner, preds, target):
    """Flatten ``preds`` and ``target`` to 1-d after checking they have the same
    number of elements (so ``(B, 1)`` vs ``(B,)`` never broadcasts to ``B x B``)."""
    preds = check_tensor(owner, "preds", preds)
    target = check_tensor(owner, "target", target)
    if preds.shape != target.shape and preds.numel() != target.numel():
        raise ValueError(
            f"{owner}: `preds` and `target` must have the same number of elements, "
            f"got shapes {tuple(preds.shape)} and {tuple(target.shape)}"
        )
    return preds.reshape(-1), target.reshape(-1)


# Target checks without a host sync: `update` adds the number of bad targets of the batch to a
# device counter (one small kernel, additive, so DDP's sum-reduction keeps it right) and `compute`,
# which reads values back anyway, raises. Checking on the host per batch (`.any().item()`) would
# stall the GPU every step; checking only the first batch would miss a bad label later on. The
# error then comes at the end of the epoch's phase instead of at the bad batch.

def count_outside(target: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """The number of ``target`` values outside ``lo <= t < hi`` (or not whole numbers), as a device tensor."""
    if target.dtype == torch.bool:
        return torch.zeros((), dtype=torch.int64, device=target.device)
    bad = (target < lo) | (target >= hi)
    if target.is_floating_point():
        bad |= target != torch.round(target)  # NaN too (NaN != NaN)
    return bad.sum()


def count_not_binary(target: torch.Tensor) -> torch.Tensor:
    """The number of ``target`` values other than 0 and 1, as a device tensor."""
    if target.dtype == torch.bool:
        return torch.zeros((), dtype=torch.int64, device=target.device)
    return ((target != 0) & (target != 1)).sum()


def raise_bad_targets(owner: str, count: torch.Tensor, expected: str, hint: str = "") -> None:
    """At compute: raise ValueError when ``count`` (from ``count_outside``/``count_not_binary``) is not 0."""
    n = int(count.item())
    if n:
        raise ValueError(f"{owner}: {n} value(s) of `target` are not {expected}{hint}")


def class_index_hint(index_base: int, num_classes) -> str:
    other = 1 - index_base
    classes = f" and {num_classes} classes" if num_classes is not None else ""
    return (f" (index_base={index_base}{classes}; labels counted from {other}? use index_base={other}; R's "
            "luz counts from 1, Python from 0)")


def host_ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    """``num / den`` as a Python float (nan when ``den`` is 0). Syncs."""
    d = den.item()
    if d == 0:
        return math.nan
    return float(num.item()) / d


def accum_dtype(device) -> torch.dtype:
    """float64 for accumulators, except on MPS, which has no float64."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def _tensor_to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    dtype = torch.float32 if (device.type == "mps" and t.dtype == torch.float64) else t.dtype
    return t.to(device=device, dtype=dtype)


def _sorted_keys(d):
    try:
        return sorted(d)
    except TypeError:
        return list(d)


def format_metric_value(value) -> str:
    """luz-style display of a computed metric value.

    >>> format_metric_value(0.95)
    '0.9500'
    >>> format_metric_value({"gen": 1.0, "disc": 0.123456})
    'gen: 1.0000 | disc: 0.1235'
    """
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, Mapping):
        return " | ".join(f"{k}: {format_metric_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return " | ".join(format_metric_value(v) for v in value)
    if isinstance(value, numbers.Real) and not _is_bool(value):
        return f"{float(value):.4f}"
    return str(value)


# --------------------------------------------------------------------------
# Metric
# --------------------------------------------------------------------------

class Metric:
    """Base class for metrics (luz's ``luz_metric``).

    Subclasses set their state as tensors in ``__init__`` (on the CPU; the
    engine moves it with :meth:`to`), accumulate it in :meth:`update` without
    host syncs, and return plain Python numbers from :meth:`compute`.
    The constructor arguments are remembered, so :meth:`fresh` can build a
    new instance with reset state (the engine does so every epoch and phase).

    Example:

    >>> import torch
    >>> class MeanPred(Metric):
    ...     abbrev = "Mean"
    ...     def __init__(self, scale=1.0):
    ...         self.scale = scale
    ...         self.total = torch.zeros((), dtype=torch.float64)
    ...         self.n = torch.zeros((), dtype=torch.int64)
    ...     def update(self, preds, target):
    ...         self.total += preds.detach().sum() * self.scale
    ...         self.n += preds.numel()
    ...     def compute(self):
    ...         return self.total.item() / self.n.item() if self.n.item() else float("nan")
    >>> m = MeanPred(scale=2.0)
    >>> m.update(torch.tensor([1.0, 2.0]), None)
    >>> m.compute(), m.name
    (3.0, 'Mean')
    >>> m.fresh().compute()
    nan
    """

    #: Display name; ``None`` means the class name. Records use it lowercased.
    abbrev = None
    #: The training :class:`pyluz.Context`, set by the engine before use.
    ctx = None
    #: Tensor attributes that are configuration, not state: they move with
    #: :meth:`to` but are not summed by :meth:`reduce_state`.
    _constant_attrs: tuple = ()

    def __new__(cls, /, *args, **kwargs):
        self = super().__new__(cls)
        self._ctor_args = args
        self._ctor_kwargs = dict(kwargs)
        return self

    def __init__(self):
        pass

    # -- interface ---------------------------------------------------------
    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement update(preds, target)")

    def compute(self) -> float | dict | list:
        raise NotImplementedError(f"{type(self).__name__} must implement compute()")

    # -- engine support ----------------------------------------------------
    @property
    def name(self) -> str:
        abbrev = self.abbrev
        return type(self).__name__ if abbrev is None else str(abbrev)

    def fresh(self) -> Metric:
        """A new instance of the same class, built with the same arguments."""
        args = getattr(self, "_ctor_args", ())
        kwargs = getattr(self, "_ctor_kwargs", {})
        return type(self)(*args, **kwargs)

    def to(self, device: torch.device | str) -> Metric:
        """Move every tensor attribute (also inside dicts/lists) to ``device``.
        float64 becomes float32 on MPS. Returns ``self``."""
        device = torch.device(device)
        for key, value in list(vars(self).items()):
            if key in _NOT_STATE:
                continue
            moved = map_tensors(lambda t: _tensor_to(t, device), value)
            if moved is not value:
                setattr(self, key, moved)
        return self

    def _state_tensors(self):
        """(container, key) pairs of every state tensor, in a rank-independent order."""
        slots = []
        attrs = vars(self)
        for key in sorted(attrs):
            if key in _NOT_STATE or key in self._constant_attrs:
                continue
            value = attrs[key]
            if isinstance(value, torch.Tensor):
                slots.append((attrs, key))
            elif isinstance(value, dict):
                for k in _sorted_keys(value):
                    if isinstance(value[k], torch.Tensor):
                        slots.append((value, k))
        return slots

    def reduce_state(self, all_reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum the state across processes (DDP): ``all_reduce(t)`` is called on
        every state tensor and must sum it in place. State must be additive."""
        for container, key in self._state_tensors():
            t = container[key]
            out = all_reduce(t)
            if isinstance(out, torch.Tensor) and out is not t:
                container[key] = out

    def format(self, value) -> str:
        """Display a computed value the luz way (``0.1234``; dicts as ``a: 1.0000 | b: 2.0000``)."""
        return format_metric_value(value)

    def __repr__(self) -> str:
        parts = [repr(a) for a in getattr(self, "_ctor_args", ())]
        parts += [f"{k}={v!r}" for k, v in getattr(self, "_ctor_kwargs", {}).items()]
        return f"{type(self).__name__}({', '.join(parts)})"


# --------------------------------------------------------------------------
# LossAverage
# --------------------------------------------------------------------------

class LossAverage(Metric):
    """Running mean of ``ctx.loss`` over batches, per optimizer ("Loss").

    luz's formula: the unweighted mean of the batch losses (not weighted by
    batch size). ``ctx.loss`` may be a dict ``{opt_name: 0-dim tensor}``, a
    bare tensor or a Python number; ``None`` entries are skipped.
    ``compute()`` gives a float with one optimizer, else ``{opt_name: float}``.
    ``preds`` and ``target`` are ignored. Always the first metric of a phase.

    >>> import torch
    >>> from types import SimpleNamespace
    >>> m = LossAverage()
    >>> m.ctx = SimpleNamespace(loss={"opt": torch.tensor(1.0)})
    >>> m.update(None, None)
    >>> m.ctx.loss = {"opt": torch.tensor(2.0)}
    >>> m.update(None, None)
    >>> m.compute()
    1.5
    """

    abbrev = "Loss"
    # Batch losses wait in a list and are summed FOLD_EVERY at a time: appending costs no tensor op
    # (each op costs several µs per step on small models) and reading them needs no device sync.
    FOLD_EVERY = 256

    def __init__(self):
        self.sums: dict = {}
        self.counts: dict = {}
        self.pending: dict = {}

    def _add(self, key, value):
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(
                    f"LossAverage: `ctx.loss` must hold scalar losses, got a tensor of shape "
                    f"{tuple(value.shape)} for {key!r}"
                )
            value = value.detach().reshape(()) if value.dim() or value.requires_grad else value
        elif isinstance(value, numbers.Real) and not _is_bool(value):
            value = torch.tensor(float(value))
        else:
            raise TypeError(
                "LossAverage: `ctx.loss` must be a tensor, a number or a dict of them, "
                f"got {type(value).__name__} for {key!r}"
            )
        pending = self.pending.get(key)
        if pending is None:
            dev = value.device
            self.sums[key] = torch.zeros((), dtype=accum_dtype(dev), device=dev)
            self.counts[key] = torch.zeros((), dtype=torch.int64, device=dev)
            pending = self.pending[key] = []
        pending.append(value)
        if len(pending) >= self.FOLD_EVERY:
            self._fold(key)

    def _fold(self, key):
        pending = self.pending[key]
        if pending:
            total = self.sums[key]
            total += torch.stack([v.to(total.device) for v in pending]).sum().to(total.dtype)
            self.counts[key] += len(pending)
            pending.clear()

    def _fold_all(self):
        for key in self.pending:
            self._fold(key)

    def reduce_state(self, all_reduce) -> None:
        self._fold_all()
        super().reduce_state(all_reduce)

    def update(self, preds=None, target=None):
        ctx = self.ctx
        if ctx is None:
            raise RuntimeError("LossAverage: no ctx is set; the engine sets `metric.ctx` before update")
        loss = ctx.loss
        if loss is None:
            return
        if isinstance(loss, Mapping):
            for key, value in loss.items():
                if value is not None:
                    self._add(key, value)
        else:
            self._add("opt", loss)

    def compute(self):
        if not self.sums:
            return math.nan
        self._fold_all()  # same value, summed in one place
        values = {k: host_ratio(self.sums[k], self.counts[k]) for k in self.sums}
        if len(values) == 1:
            return next(iter(values.values()))
        return values


# --------------------------------------------------------------------------
# metric sets
# --------------------------------------------------------------------------

def _metric_list(value, argname):
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for i, m in enumerate(items):
        where = f"`{argname}`" if not isinstance(value, (list, tuple)) else f"`{argname}[{i}]`"
        if isinstance(m, type) and issubclass(m, Metric):
            raise TypeError(
                f"{where} is the metric class {m.__name__}, not an instance. "
                f"Did you forget to instantiate the metric? Use {m.__name__}() instead."
            )
        if not isinstance(m, Metric):
            raise TypeError(
                f"{where} must be a Metric instance (or a list of them), got {type(m).__name__}"
            )
    return items


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
            raise ValueError(f'MetricSet.for_phase: `phase` must be "train" or "valid", got {phase!r}')
        return [LossAverage(), *(m.fresh() for m in self.metrics), *(m.fresh() for m in extra)]

    def __repr__(self) -> str:
        return (
            f"MetricSet(metrics={self.metrics!r}, train_metrics={self.train_metrics!r}, "
            f"valid_metrics={self.valid_metrics!r})"
        )


def as_metric_set(x) -> MetricSet:
    """Normalise what a user passes as ``metrics`` into a :class:`MetricSet`.

    >>> from pyluz.metrics import Accuracy
    >>> len(as_metric_set(None).metrics), len(as_metric_set(Accuracy()).metrics)
    (0, 1)
    """
    if x is None:
        return MetricSet()
    if isinstance(x, MetricSet):
        return x
    if isinstance(x, (Metric, list, tuple)) or (isinstance(x, type) and issubclass(x, Metric)):
        return MetricSet(x)
    raise TypeError(
        f"`metrics` must be a list of Metric instances or a MetricSet, got {type(x).__name__}"
    )


def metric_keys(metrics) -> list:
    """Records keys for a phase's metrics: lowercased names, duplicates suffixed.

    >>> from pyluz.metrics import Accuracy, BinaryAccuracy
    >>> metric_keys([LossAverage(), Accuracy(), BinaryAccuracy(), Accuracy()])
    ['loss', 'acc', 'acc_2', 'acc_3']
    """
    keys = []
    used = set()
    for m in metrics:
        base = m.name.lower()
        key = base
        n = 2
        while key in used:
            key = f"{base}_{n}"
            n += 1
        used.add(key)
        keys.append(key)
    return keys
