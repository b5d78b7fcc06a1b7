"""Metric base class, the loss average, metric sets and shared helpers.

A metric keeps its state as tensors on the training device. ``update`` only
queues device work (no ``.item()``, no host sync); ``compute`` is the one
place that reads values back to the host.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Mapping

import torch

from ..checks import is_bool as _is_bool
from ..checks import message
from ..nested import map_structure

__all__ = [
    "Metric",
    "LossAverage",
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
    return (
        f" (index_base={index_base}{classes}; labels counted from {other}? use index_base={other}; R's "
        "luz counts from 1, Python from 0)"
    )


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


def _move_leaf(value, device):
    if isinstance(value, torch.Tensor):
        return _tensor_to(value, device)
    if isinstance(value, torch.nn.Module):  # e.g. a torchmetrics object held by a user's metric
        return value.to(device)
    return value


def _torchmetrics_classes():
    """(Metric, MetricCollection) of torchmetrics when the user has imported it, else None.

    A torchmetrics object can only exist once its module is imported, so looking in
    ``sys.modules`` keeps torchmetrics an optional dependency that is never imported here.
    """
    tm = sys.modules.get("torchmetrics")
    if tm is None:
        return None
    return tm.Metric, tm.MetricCollection


def _fresh_argument(value):
    """A constructor argument for :meth:`Metric.fresh`: metrics get fresh state, the rest is shared."""
    if isinstance(value, Metric):
        return value.fresh()
    classes = _torchmetrics_classes()
    if classes is not None and isinstance(value, classes[0]):
        clone = value.clone()
        clone.reset()
        return clone
    return value


_NOT_COPYABLE = object()


def _copy_state(value):
    """A copy of `value` when it is state a checkpoint can hold (tensors, numbers, strings, None and
    dicts/lists/tuples of them), else `_NOT_COPYABLE` (e.g. a function or a wrapped metric)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if value is None or isinstance(value, (bool, numbers.Number, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_copy_state(v) for v in value]
        if any(v is _NOT_COPYABLE for v in items):
            return _NOT_COPYABLE
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        items = {k: _copy_state(v) for k, v in value.items()}
        if any(v is _NOT_COPYABLE for v in items.values()) or not all(isinstance(k, (str, int)) for k in items):
            return _NOT_COPYABLE
        return items
    return _NOT_COPYABLE


def _sorted_keys(d):
    try:
        return sorted(d)
    except TypeError:
        return list(d)


def format_metric_value(value) -> str:
    """luz's display of a computed metric value: rounded to 4 decimals, printed as R prints numbers.

    >>> format_metric_value(0.95)
    '0.95'
    >>> format_metric_value(1.23456)
    '1.2346'
    >>> format_metric_value({"gen": 1.0, "disc": 0.123456})
    'gen: 1 | disc: 0.1235'
    """
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, Mapping):
        return " | ".join(f"{k}: {format_metric_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return " | ".join(format_metric_value(v) for v in value)
    if isinstance(value, numbers.Real) and not _is_bool(value):
        return _r_number(round(float(value), 4))
    return str(value)


def _r_number(x: float) -> str:
    # R's as.character(): 15 significant digits, no trailing zeros, NaN/Inf spelled as in R
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    return format(x, ".15g")


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

    Shared state: ``fresh()`` calls the constructor again with the *same* argument
    objects. State created in ``__init__`` is new each time; state kept in a mutable
    argument (a list, a dict, a tensor updated in place) would be shared by every epoch
    and phase and silently mix them. Arguments that are metrics (pyluz ``Metric`` or
    torchmetrics objects) are the exception: ``fresh()`` passes fresh, reset copies of
    them. A torchmetrics object can also be passed to ``metrics=`` directly (no
    subclass needed); that way it is also synchronised under DDP, which the state of a
    torchmetrics object held inside a subclass is not.

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
        """A new instance of the same class, built with the same arguments; arguments that are
        metrics themselves (pyluz or torchmetrics) are replaced by fresh, reset copies."""
        args = [_fresh_argument(a) for a in getattr(self, "_ctor_args", ())]
        kwargs = {k: _fresh_argument(v) for k, v in getattr(self, "_ctor_kwargs", {}).items()}
        return type(self)(*args, **kwargs)

    def to(self, device: torch.device | str) -> Metric:
        """Move every tensor attribute (also inside dicts/lists) to ``device``.
        float64 becomes float32 on MPS. Returns ``self``."""
        device = torch.device(device)
        for key, value in list(vars(self).items()):
            if key in _NOT_STATE:
                continue
            moved = map_structure(lambda leaf: _move_leaf(leaf, device), value)
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

    def state_dict(self) -> dict:
        """A copy of the running state (tensor attributes, also in dicts/lists, and plain numbers), so
        a checkpoint taken inside an epoch can continue it with :meth:`load_state_dict`.

        >>> m = LossAverage()
        >>> m.ctx = type("Ctx", (), {"loss": {"opt": torch.tensor(2.0)}})()
        >>> m.update()
        >>> again = LossAverage()
        >>> again.load_state_dict(m.state_dict())
        >>> again.compute()
        2.0
        """
        state = {}
        for key, value in vars(self).items():
            if key in _NOT_STATE or key.startswith("__"):
                continue
            copied = _copy_state(value)
            if copied is not _NOT_COPYABLE:
                state[key] = copied
        return state

    def load_state_dict(self, state: dict) -> None:
        """Put back what :meth:`state_dict` returned (then :meth:`to` moves it to the device in use)."""
        for key, value in state.items():
            setattr(self, key, value)

    def reduce_state(self, all_reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum the state across processes (DDP): ``all_reduce(t)`` is called on
        every state tensor and must sum it in place. State must be additive."""
        for container, key in self._state_tensors():
            t = container[key]
            out = all_reduce(t)
            if isinstance(out, torch.Tensor) and out is not t:
                container[key] = out

    def format(self, value) -> str:
        """Display a computed value the luz way (``0.1234``, ``0.95``; dicts as ``a: 1 | b: 2.5``)."""
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

    def _totals(self, key):
        """(sum, count) including the pending losses, as `_fold` would make them."""
        total, count, pending = self.sums[key], self.counts[key], self.pending[key]
        if pending:
            total = total + torch.stack([v.to(total.device) for v in pending]).sum().to(total.dtype)
            count = count + len(pending)
        return total, count

    def _fold_all(self):
        for key in self.pending:
            self._fold(key)

    def reduce_state(self, all_reduce) -> None:
        self._fold_all()
        super().reduce_state(all_reduce)

    def state_dict(self) -> dict:
        # The waiting batch losses as one stacked tensor per key (cheap to copy and to save);
        # not folded, so a resumed epoch sums them in the same groups as an uninterrupted one.
        return {
            "sums": {k: v.clone() for k, v in self.sums.items()},
            "counts": {k: v.clone() for k, v in self.counts.items()},
            "pending": {k: torch.stack(v) if v else None for k, v in self.pending.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.counts = dict(state["sums"]), dict(state["counts"])
        self.pending = {k: list(v.unbind()) if v is not None else [] for k, v in state["pending"].items()}

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
        # Without folding: the sums then group the batch losses the same way however often the
        # progress bar asks, so the epoch's value never depends on display timing (or a resume).
        values = {k: host_ratio(*self._totals(k)) for k in self.sums}
        if len(values) == 1:
            return next(iter(values.values()))
        return values


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
