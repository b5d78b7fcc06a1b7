"""`LRScheduler`: any torch learning-rate scheduler, stepped at a breakpoint (luz_callback_lr_scheduler)."""

import inspect

import torch

from ..checks import check_callable, check_choice, check_optional_str, check_type
from ..events import BATCH_EVENTS, TRAIN_BATCH_EVENTS, check_event
from .base import Callback
from .gradients import HOLDING_STEP


def resolve_optimizer_name(optimizers, opt_name, owner):
    """The name of the optimizer to use: `opt_name`, or the only one when `opt_name` is None."""
    names = list(optimizers)
    if opt_name is None:
        if len(names) == 1:
            return names[0]
        raise ValueError(
            f"{owner}: the model has several optimizers ({', '.join(map(repr, names))}); "
            "pass `opt_name=` to choose one."
        )
    return check_choice(opt_name, "opt_name", names, owner)


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

    `report(step, group, lr, by_metric)`, if given, is called when the scheduler is built (step 0)
    and after each step for every parameter group (metric-driven schedulers: only after steps,
    for the groups whose rate was reduced); the R package prints
    R torch's "Adjusting learning rate ..." lines with it.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> cb = pyluz.callbacks.LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    >>> fitted = model.fit((x, y), epochs=2, verbose=False, callbacks=[cb])
    >>> cb.scheduler.get_last_lr()
    [0.00025]
    >>> per_batch = pyluz.callbacks.LRScheduler(torch.optim.lr_scheduler.OneCycleLR, call_on="on_train_batch_end",
    ...                                         max_lr=0.1, total_steps=2 * 2)   # 2 epochs of 2 batches
    >>> fitted = model.fit((x, y), epochs=2, verbose=False, callbacks=[per_batch])
    """

    def __init__(self, scheduler, call_on="on_epoch_end", opt_name=None, report=None, **kwargs):
        check_callable(
            scheduler,
            "scheduler",
            "a scheduler class or a factory f(optimizer, **kwargs) such as torch.optim.lr_scheduler.StepLR",
            owner="LRScheduler",
        )
        check_type(call_on, "call_on", str, "a breakpoint name (str)", owner="LRScheduler")
        check_event(call_on, "call_on")
        check_optional_str(opt_name, "opt_name", "None or an optimizer name (str)", owner="LRScheduler")
        check_callable(report, "report", "None or a function", owner="LRScheduler", allow_none=True)
        self.scheduler_fn = scheduler
        self.report = report
        self.steps = 0
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
            raise TypeError(
                "LRScheduler: `scheduler(optimizer, ...)` must return an object with a step() method, "
                f"got {type(self.scheduler).__name__}."
            )
        self._wants_metric = wants_metric(self.scheduler)
        if self.report is not None and not self._wants_metric:
            # R torch's schedules announce the starting rate when they are built
            for i, group in enumerate(self._groups(), start=1):
                self.report(0, i, float(group["lr"]), False)
        self._per_optimizer_step = self.call_on in TRAIN_BATCH_EVENTS
        if self._pending_state is not None:
            self.scheduler.load_state_dict(self._pending_state)
            self._pending_state = None
        if self.call_on == "on_fit_begin":
            self._step()

    def _step(self):
        before = [g["lr"] for g in self._groups()] if self.report is not None else None
        if self._per_optimizer_step and self.ctx.buffers.get(HOLDING_STEP):
            return  # gradient accumulation: the optimizer does not step at this batch
        if self._wants_metric:
            self.scheduler.step(self.current_metric())
        else:
            self.scheduler.step()
        self.steps += 1
        if before is not None:
            self._report(before)

    def _groups(self):
        return self.ctx.optimizers[self._name].param_groups

    def _report(self, before):
        # `report(step, group, lr, by_metric)` after every step (group 1-based, as front ends count):
        # every group for schedules, only the groups whose rate went down for metric-driven ones.
        for i, (old, group) in enumerate(zip(before, self._groups(), strict=True), start=1):
            if not self._wants_metric or group["lr"] < old:
                self.report(self.steps, i, float(group["lr"]), self._wants_metric)

    def current_metric(self):
        """The value given to metric-driven schedulers (see the class docs)."""
        ctx = self.ctx
        if self.call_on in BATCH_EVENTS:
            return _pick(ctx.loss, self._name)
        records = ctx.records["metrics"]
        for epoch in (ctx.epoch, ctx.epoch - 1):
            for phase in ("valid", "train"):
                entries = records.get(phase, [])
                if 1 <= epoch <= len(entries) and "loss" in entries[epoch - 1]:
                    return _pick(entries[epoch - 1]["loss"], self._name)
        raise RuntimeError(
            f"LRScheduler: no epoch loss recorded yet at {self.call_on} of epoch {ctx.epoch}; "
            "step a metric-driven scheduler at 'on_epoch_end'."
        )

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
