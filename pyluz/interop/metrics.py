"""Metrics written in R (``luz_metric()``) as engine metrics.

The engine builds a fresh metric per epoch and phase with `Metric.fresh()` (luz calls
``initialize`` there). `RMetric.fresh()` asks R for a **new R instance** through `factory`,
which returns that instance's functions::

    {"abbrev": "Acc", "update": f(preds, target), "compute": f(), "bind_ctx": f(ctx), "to": f(device),
     "update_tensors": f(preds, target)}

The metric's state stays in R; every call goes through the main-thread guard. `update_tensors`
(optional) is the same R function handed over without argument conversion (reticulate's
``convert = FALSE``): it is called when `preds` and `target` are both tensors, which reach R as
tensor objects either way, only cheaper; anything else (lists of tensors, ...) goes to `update`,
which converts its arguments to R values.

Under DDP (a fit whose ``ctx.model`` is DDP-wrapped) the R state can't be summed across processes,
so each batch's predictions and targets are gathered from every rank first
(`distributed.gather_batch`, once per batch for all R metrics) and every rank calls the R `update`
on the global batch: the R state is the one-process state on every rank, and `reduce_state` has
nothing left to do. The cost: per batch, two ``all_gather`` calls (row counts, then the predictions'
and targets' bytes in one buffer; measured 4-8 ms a batch with 2 gloo ranks on a loaded 2-core
machine, batches of 8 to 256 rows), and each rank's R `update` sees ``world_size`` times the rows
(the metric's work is repeated on every rank, not split). Summing an additive state would cost one
small ``all_reduce`` an epoch instead; R metrics can't declare such a state yet.

``update_every = K`` (opt-in, ``luz_metric(update_every = K)``): every R call costs tens of µs, so
the metric keeps K batches of (detached, on-device) predictions and targets and calls the R
`update` once on their concatenation (`nested.concat`, along dim 0); `compute` flushes first, so
the epoch's value and every progress refresh see every batch. Under DDP the buffered batches are
the gathered global ones. This keeps the value of a metric whose state is a sum over samples
(counts of correct rows, sums of errors) and changes one that averages per-batch values or reads
``ctx$iter``: the R side documents which.
"""

from __future__ import annotations

import torch

from .. import distributed, nested
from ..checks import check_callable, check_int
from ..metrics.base import Metric
from .callbacks import BindsRContext
from .guard import guard

__all__ = ["RMetric"]

_PARTS = ("update", "compute", "bind_ctx", "to", "update_tensors")
_Tensor = torch.Tensor
_last_gathered = [None, None, None, None]  # (batch key, preds, target, gathered pair): gathered once a batch


def _global_batch(ctx, preds, target):
    """This batch's predictions and targets from every rank (cached for the batch's other R metrics;
    the key is the batch's position and the very objects, so a step reusing a tensor can't hit it)."""
    last = _last_gathered
    key = (id(ctx), ctx.epoch, ctx.iter, ctx.training)
    if last[0] == key and last[1] is preds and last[2] is target:
        return last[3]
    pair = (distributed.gather_batch(preds), distributed.gather_batch(target))
    last[:] = [key, preds, target, pair]
    return pair


class RMetric(BindsRContext, Metric):
    """An engine metric backed by an R ``luz_metric`` instance.

    `factory()` builds a new R instance and returns its parts (see the module docstring).
    A template (no instance yet) only knows `label`; `fresh()` gives usable metrics.
    """

    def __init__(self, factory, label="r_metric", parts=None, update_every=1):
        check_callable(factory, "factory", "an R function", owner="RMetric")
        self._every = check_int(update_every, "update_every", owner=f"R metric {label!r}", min_value=1)
        self._pending = []  # (preds, target) not yet given to R (update_every > 1)
        self._factory = guard(factory, f"{label}.new")
        self._label = str(label)
        self._ctx = None
        self._fns = {}
        self._update_tensors = None
        self._local_updates = False  # updated on this rank's rows only (not gathered)
        self.abbrev = None
        if parts is not None:
            self._attach(parts)

    def _attach(self, parts):
        if not isinstance(parts, dict):
            raise TypeError(
                f"R metric {self._label!r}: the factory must return a named list, got {type(parts).__name__}."
            )
        abbrev = parts.get("abbrev")
        self.abbrev = self._label if abbrev is None else str(abbrev)
        for part in _PARTS:
            fn = parts.get(part)
            self._fns[part] = guard(fn, f"{self.abbrev}.{part}") if fn is not None else None
        if self._fns["update"] is None or self._fns["compute"] is None:
            raise ValueError(f"R metric {self._label!r} must define `update()` and `compute()`.")
        self._update_tensors = self._fns["update_tensors"]
        self._bind = self._fns["bind_ctx"]

    # -- engine protocol -----------------------------------------------------------------------
    def fresh(self):
        return RMetric(self._factory, self._label, parts=self._factory(), update_every=self._every)

    def _need_instance(self):
        if not self._fns:
            raise RuntimeError(f"R metric {self._label!r}: call fresh() first (this is a template).")

    def update(self, preds, target):
        if self._ctx is not None and distributed.is_ddp(self._ctx.model):
            preds, target = _global_batch(self._ctx, preds, target)
        else:
            self._local_updates = True
        if self._every > 1:
            self._pending.append((nested.detach(preds), nested.detach(target)))
            if len(self._pending) >= self._every:
                self._flush()
            return
        self._update_r(preds, target)

    def _flush(self):
        """Give the buffered batches to R: one `update` on their concatenation (one per batch when
        their structures differ and can't be joined)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        preds = nested.concat([p for p, _ in pending])
        target = nested.concat([t for _, t in pending])
        if len(pending) > 1 and (type(preds) is list or type(target) is list):
            for p, t in pending:  # `concat` returns its list unchanged when it can't join it
                self._update_r(p, t)
            return
        self._update_r(preds, target)

    def _update_r(self, preds, target):
        fast = self._update_tensors
        if fast is not None and type(preds) is _Tensor and type(target) is _Tensor:
            fast(preds, target)
            return
        self._need_instance()
        self._fns["update"](preds, target)

    def compute(self):
        self._need_instance()
        self._flush()
        return self._fns["compute"]()

    def to(self, device):
        device = torch.device(device)
        if self._fns.get("to") is not None and device.type != "cpu":
            self._fns["to"](str(device))
        return self

    def reduce_state(self, all_reduce):
        self._flush()
        # The R state was updated on the gathered global batches (see `update`): nothing to sum.
        if self._local_updates:
            raise NotImplementedError(
                f"R metric {self.name!r}: it was updated on one process's rows only, and metrics written in R "
                "can't be summed across processes (under DDP they gather the batches instead)."
            )

    @property
    def name(self):
        return self._label if self.abbrev is None else str(self.abbrev)

    def __repr__(self):
        return f"<RMetric {self.name}>"
