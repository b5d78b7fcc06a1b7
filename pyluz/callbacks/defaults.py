"""The callbacks every run starts with (luz's `default_callbacks()`), one function per kind of run.

A fit and an evaluation use Profile, TrainValid, MetricsCallback, Progress and Interrupt; a
prediction only Progress and Interrupt. The user's callbacks are added to these, then all are
sorted by `weight` (stable).
"""

import math
import time
import warnings

import torch

from .. import distributed
from ..control import CallbackError
from ..metrics import metric_keys
from .base import Callback
from .progress import Progress


def default_fit_callbacks(metric_set):
    """The callbacks every fit starts with, given the run's `MetricSet`."""
    return [Profile(), TrainValid(), MetricsCallback(metric_set), Progress(), Interrupt()]


def default_evaluate_callbacks(metric_set):
    """The callbacks every `evaluate()` starts with (the same as a fit's: one validation pass)."""
    return default_fit_callbacks(metric_set)


def default_predict_callbacks():
    """The callbacks every `predict()` starts with."""
    return [Progress(), Interrupt()]


class TrainValid(Callback):
    """Switches the model between train and eval mode and resets `ctx.loss` per phase."""

    def on_train_begin(self):
        self.ctx.model.train()
        self.ctx.training = True
        self.ctx.loss = {}
        distributed.set_epoch(self.ctx.data, self.ctx.epoch)  # reshuffles a DistributedSampler (DDP)

    def on_valid_begin(self):
        self.ctx.model.eval()
        self.ctx.training = False
        self.ctx.loss = {}


class MetricsCallback(Callback):
    """Builds fresh metrics per phase, updates them per batch and logs `compute()` at phase end.

    Metric state stays on the device; nothing here syncs per batch.
    """

    def __init__(self, metric_set):
        self.metric_set = metric_set
        self.keys = {"train": [], "valid": []}
        self.warned = False

    def _begin(self, phase):
        device = metric_device(self.ctx)
        metrics = [m.to(device) for m in self.metric_set.for_phase(phase)]
        for m in metrics:
            m.ctx = self.ctx
        self.ctx.metrics[phase] = metrics
        self.keys[phase] = metric_keys(metrics)

    def _update(self, phase):
        pred = self.ctx.pred
        if isinstance(pred, torch.Tensor):
            # A detached prediction builds no graph, without toggling grad mode every batch.
            self._update_all(phase, pred.detach())
        else:
            with torch.no_grad():
                self._update_all(phase, pred)

    def _update_all(self, phase, pred):
        ctx = self.ctx
        target = ctx.target
        for m in ctx.metrics[phase]:
            try:
                m.update(pred, target)
            except Exception as e:
                raise CallbackError("metric", m.name, "update", ctx.epoch, ctx.iter, e, training=ctx.training) from e

    def _end(self, phase):
        ctx = self.ctx
        if distributed.is_ddp(ctx.model):  # DDP: sum the state over ranks so compute() is global
            distributed.reduce_metrics(ctx.metrics[phase])
        for key, m in zip(self.keys[phase], ctx.metrics[phase], strict=True):
            try:
                value = m.compute()
            except Exception as e:
                raise CallbackError("metric", m.name, "compute", ctx.epoch, ctx.iter, e, training=ctx.training) from e
            ctx.log_metric(key, value)
            if key == "loss":
                self._warn_non_finite(value)

    def _warn_non_finite(self, value):
        # Checked once per phase on the epoch's mean loss (a NaN batch makes the mean NaN),
        # so finding it costs no per-step sync.
        values = value.values() if isinstance(value, dict) else [value]
        if not self.warned and any(not math.isfinite(v) for v in values):
            self.warned = True
            warnings.warn(
                f"The loss is not finite (epoch {self.ctx.epoch}); add "
                "pyluz.callbacks.TerminateOnNaN() to stop training when it happens.",
                RuntimeWarning,
                stacklevel=2,
            )

    def on_train_begin(self):
        self._begin("train")

    def on_train_batch_end(self):
        self._update("train")

    def on_train_end(self):
        self._end("train")

    def on_valid_begin(self):
        self._begin("valid")

    def on_valid_batch_end(self):
        self._update("valid")

    def on_valid_end(self):
        self._end("valid")


def metric_device(ctx):
    """Where metric state lives: the accelerator's device, or the model's when the user places things."""
    if ctx.accelerator.device_placement:
        return ctx.device
    param = next(ctx.model.parameters(), None)
    return param.device if param is not None else ctx.device


class Profile(Callback):
    """Logs wall-clock seconds of the fit, each epoch, and each train/valid phase in `records["profile"]`."""

    def __init__(self):
        self.started = {}

    def _tic(self, what):
        self.started[what] = time.perf_counter()

    def _toc(self, what):
        self.ctx.log("profile", what, time.perf_counter() - self.started.pop(what))

    def on_fit_begin(self):
        # The fit's clock starts where `fit()` was called (`ctx.called_at`), so building the model,
        # optimizers and loaders counts in the total time.
        self.started["fit"] = getattr(self.ctx, "called_at", None) or time.perf_counter()

    def on_fit_end(self):
        self._toc("fit")

    def on_epoch_begin(self):
        self._tic("epoch")

    def on_epoch_end(self):
        self._toc("epoch")

    def on_train_begin(self):
        self._tic("train")

    def on_train_end(self):
        self._toc("train")

    def on_valid_begin(self):
        self._tic("valid")

    def on_valid_end(self):
        self._toc("valid")


class Interrupt(Callback):
    """Catches Ctrl-C: runs `on_interrupt`, then `on_fit_end`, and fit returns what was trained so far."""

    def on_fit_begin(self):
        self.ctx.handlers[KeyboardInterrupt] = self._handle

    def _handle(self, error):
        self.ctx.call_callbacks("on_interrupt")  # first: Progress closes a bar left open by the interrupt
        if self.ctx.verbose and distributed.is_main_process():
            import sys

            print("Training interrupted: returning the model trained so far.", file=sys.stderr)
