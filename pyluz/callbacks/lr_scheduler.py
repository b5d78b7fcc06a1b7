"""`LRScheduler`: any torch learning-rate scheduler, stepped at a breakpoint (luz_callback_lr_scheduler)."""

import inspect

import torch

from ..events import check_event
from .base import Callback
from .gradients import HOLDING_STEP

_BATCH_EVENTS = frozenset({
    "on_train_batch_begin", "on_train_batch_after_pred", "on_train_batch_after_loss",
    "on_train_batch_before_backward", "on_train_batch_before_step", "on_train_batch_after_step",
    "on_train_batch_end", "on_valid_batch_begin", "on_valid_batch_after_pred", "on_valid_batch_after_loss",
    "on_valid_batch_end",
})
_TRAIN_BATCH_EVENTS = frozenset(e for e in _BATCH_EVENTS if e.startswith("on_train_batch"))


def resolve_optimizer_name(optimizers, opt_name, owner):
    """The name of the optimizer to use: `opt_name`, or the only one when `opt_name` is None."""
    names = list(optimizers)
    if opt_name is None:
        if len(names) == 1:
            return names[0]
        raise ValueError(f"{owner}: the model has several optimizers ({', '.join(map(repr, names))}); "
                         "pass `opt_name=` to choose one.")
    if opt_name not in optimizers:
        raise ValueError(f"{owner}: `opt_name` must be one of {', '.join(map(repr, names))}, got {opt_name!r}.")
    return opt_name


def wants_metric(scheduler):
    """True for schedulers whose `step()` takes the monitored value (ReduceLROnPlateau and alike)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return True
    try:
        params = inspect.signature(scheduler.step).parameters
    except (TypeError, ValueError):
        return False
    return "metrics" in params


class LRScheduler(Callback):
    """Steps a torch learning-rate scheduler at a breakpoint (luz's `luz_callback_lr_scheduler`).

    `scheduler` is a scheduler class or any factory `f(optimizer, **kwargs)`; it is built at
    `on_fit_begin` on `ctx.optimizers[opt_name]` (`opt_name=None` picks the only optimizer; with
    several optimizers name one; one LRScheduler per optimizer to schedule them all). `call_on` is
    any breakpoint; the default steps once per epoch.

    At a training-batch breakpoint the scheduler steps once per optimizer step: under
    `GradientAccumulation(steps=k)` it skips the batches whose optimizer step is held back, so a
    per-batch schedule is sized in optimizer steps (`ceil(n_batches / k)` per epoch). (For a
    loader of unknown length the last, smaller group of an epoch is applied at `on_train_end`,
    after the batch breakpoints, and does not step the scheduler.)

    Schedulers whose `step()` takes `metrics` (`ReduceLROnPlateau`) get the epoch metric: the mean
    validation loss of the current epoch when validation ran, else the mean training loss (the
    value of the chosen optimizer when the loss is per optimizer). At batch breakpoints they get the
    current batch's loss instead.

    `state_dict()`/`load_state_dict()` delegate to the scheduler, so checkpoints restore it.

    Example::

        cb = pyluz.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=5, gamma=0.5)
        fitted = model.fit(data, epochs=20, callbacks=[cb])
        # one cycle per batch:
        cb = LRScheduler(torch.optim.lr_scheduler.OneCycleLR, call_on="on_train_batch_end",
                         max_lr=0.1, total_steps=20 * len(train_dl))
    """

    def __init__(self, scheduler, call_on="on_epoch_end", opt_name=None, **kwargs):
        if not callable(scheduler):
            raise TypeError("LRScheduler: `scheduler` must be a scheduler class or a factory f(optimizer, **kwargs) "
                            f"such as torch.optim.lr_scheduler.StepLR, got {type(scheduler).__name__}.")
        if not isinstance(call_on, str):
            raise TypeError(f"LRScheduler: `call_on` must be a breakpoint name (str), got {type(call_on).__name__}.")
        check_event(call_on, "call_on")
        if opt_name is not None and not isinstance(opt_name, str):
            raise TypeError(f"LRScheduler: `opt_name` must be None or an optimizer name (str), got {opt_name!r}.")
        self.scheduler_fn = scheduler
        self.call_on = call_on
        self.opt_name = opt_name
        self.kwargs = kwargs
        self.scheduler = None
        self._pending_state = None
        self._name = None

    def hook(self, name):
        # Only the chosen breakpoint steps (on_fit_begin builds the scheduler, then steps itself).
        # Returned on lookup, not stored on the instance: a bound method of self kept in self
        # would be a reference cycle.
        if name == self.call_on and name != "on_fit_begin":
            return self._step
        return super().hook(name)

    def on_fit_begin(self):
        ctx = self.ctx
        self._name = resolve_optimizer_name(ctx.optimizers, self.opt_name, "LRScheduler")
        self.scheduler = self.scheduler_fn(ctx.optimizers[self._name], **self.kwargs)
        if not callable(getattr(self.scheduler, "step", None)):
            raise TypeError("LRScheduler: `scheduler(optimizer, ...)` must return an object with a step() method, "
                            f"got {type(self.scheduler).__name__}.")
        self._wants_metric = wants_metric(self.scheduler)
        self._per_optimizer_step = self.call_on in _TRAIN_BATCH_EVENTS
        if self._pending_state is not None:
            self.scheduler.load_state_dict(self._pending_state)
            self._pending_state = None
        if self.call_on == "on_fit_begin":
            self._step()

    def _step(self):
        if self._per_optimizer_step and self.ctx.buffers.get(HOLDING_STEP):
            return  # gradient accumulation: the optimizer does not step at this batch
        if self._wants_metric:
            self.scheduler.step(self.current_metric())
        else:
            self.scheduler.step()

    def current_metric(self):
        """The value given to metric-driven schedulers (see the class docs)."""
        ctx = self.ctx
        if self.call_on in _BATCH_EVENTS:
            return _pick(ctx.loss, self._name)
        records = ctx.records["metrics"]
        for epoch in (ctx.epoch, ctx.epoch - 1):
            for phase in ("valid", "train"):
                entries = records.get(phase, [])
                if 1 <= epoch <= len(entries) and "loss" in entries[epoch - 1]:
                    return _pick(entries[epoch - 1]["loss"], self._name)
        raise RuntimeError(f"LRScheduler: no epoch loss recorded yet at {self.call_on} of epoch {ctx.epoch}; "
                           "step a metric-driven scheduler at 'on_epoch_end'.")

    def state_dict(self):
        if self.scheduler is not None:
            return self.scheduler.state_dict()
        return self._pending_state

    def load_state_dict(self, state):
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)
        else:  # restored before the scheduler exists: applied when it is built
            self._pending_state = state


def _pick(loss, name):
    """A float from a loss that may be a dict per optimizer, a tensor or a number."""
    if isinstance(loss, dict):
        loss = loss[name] if name in loss else next(iter(loss.values()))
    if isinstance(loss, torch.Tensor):
        return loss.item()
    return float(loss)
