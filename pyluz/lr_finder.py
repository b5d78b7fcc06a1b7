"""`lr_finder()`: train with an increasing learning rate and record the loss (luz's `lr_finder`)."""

from __future__ import annotations

import copy
from typing import Any
import math

import numpy as np
import torch

from .callbacks.base import Callback
from .checks import check_bool, check_int, check_positive, check_real, check_type
from .control import StopTraining
from .data import num_batches
from .module import LuzModule
from .plotting import plot_lr_finder
from .runner import check_verbose


def lr_schedule(steps, start_lr, end_lr, log_spaced=True):
    """The learning rates of the `steps` steps, as luz records them: `start_lr * (end_lr / start_lr) ** (k / steps)`
    for `k = 1, ..., steps` (log-spaced; the last one is `end_lr`), or `start_lr + (end_lr - start_lr) * k / steps`
    (linear)."""
    if log_spaced:
        return [start_lr * (end_lr / start_lr) ** (k / steps) for k in range(1, steps + 1)]
    return [start_lr + (end_lr - start_lr) * k / steps for k in range(1, steps + 1)]


def smooth_loss(loss, beta=0.9):
    """luz's smoothing: `avg = beta * avg + (1 - beta) * loss_i`, `smoothed_i = avg / (1 - beta ** i)`."""
    avg, out = 0.0, []
    for i, value in enumerate(loss, start=1):
        avg = beta * avg + (1 - beta) * value
        out.append(avg / (1 - beta**i))
    return out


def diverged_at(loss, factor=4.0, beta=0.9):
    """How many leading points of `loss` come before the loss diverges: the first non-finite loss, or
    the first smoothed loss above `factor` times the lowest smoothed loss so far (`factor=None`: only
    non-finite losses count).

    >>> diverged_at([1.0, 0.5, 0.4, 3.0, 9.0, 30.0], factor=4.0)  # smoothed: 1, .74, .61, 1.31, 3.19 > 4 * .61
    4
    """
    n = next((i for i, v in enumerate(loss) if not math.isfinite(v)), len(loss))
    if factor is None:
        return n
    best = math.inf
    for i, value in enumerate(smooth_loss(loss[:n], beta)):
        best = min(best, value)
        if value > factor * best:
            return i
    return n


class LRFinderResult:
    """What `lr_finder()` returns: the learning rate and loss of each step.

    `lr` is the learning rate of the first parameter group of the first optimizer and `loss` the
    batch loss of that optimizer; with several optimizers `losses` maps each optimizer name to its
    losses. `to_frame()` gives a pandas DataFrame, `plot()` a matplotlib figure (log-x, raw loss
    dotted, smoothed loss as a line) and `suggested_lr` the learning rate where the smoothed loss
    falls fastest before its minimum. Points from where the loss diverged (see `diverged_at`,
    with `diverge_factor`) are left out of the suggestion and the plot; `lr_finder` stops there.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> res = pyluz.lr_finder(model, (x, y), steps=20, verbose=False, dataloader_options={"batch_size": 8})
    >>> list(res.to_frame().columns), len(res)
    (['lr', 'loss'], 20)
    >>> res.plot().savefig("lr.png")
    """

    def __init__(self, lr, loss, losses=None, diverge_factor=4.0):
        self.lr = list(lr)
        self.loss = list(loss)
        self.losses = dict(losses) if losses else {}
        self.diverge_factor = diverge_factor

    def __len__(self):
        return len(self.lr)

    def to_frame(self):
        """DataFrame with columns `lr`, `loss` (plus `loss_<opt>` per optimizer when there are several)."""
        import pandas as pd

        data = {"lr": self.lr, "loss": self.loss}
        if len(self.losses) > 1:
            data.update({f"loss_{name}": values for name, values in self.losses.items()})
        return pd.DataFrame(data)

    def smoothed(self, beta=0.9):
        """The smoothed loss (luz's plot smoothing)."""
        return smooth_loss(self.loss, beta)

    def kept(self, beta=0.9):
        """How many leading points come before the loss diverged (`diverged_at` with `diverge_factor`)."""
        return diverged_at(self.loss, self.diverge_factor, beta)

    def suggestion(self, beta=0.9):
        """The learning rate with the steepest descent of the smoothed loss (against log10(lr)) before
        the smoothed loss reaches its minimum.

        Points from where the loss diverged on are ignored; NaN when fewer than 3 points remain.
        A rate past the minimum would sit where the loss is already on its way up.
        """
        n = self.kept(beta)
        if n < 3:
            return math.nan
        lr = np.asarray(self.lr[:n], dtype=float)
        smoothed = np.asarray(smooth_loss(self.loss[:n], beta))
        slope = np.gradient(smoothed, np.log10(lr))
        # The first tenth is skipped: the smoothed loss is still settling there (few batches averaged),
        # and its wobble would pass for a descent at rates too small to train.
        skip = n // 10
        lowest = max(int(np.argmin(smoothed)), skip + 1)
        return float(lr[skip + int(np.argmin(slope[skip : lowest + 1]))])

    @property
    def suggested_lr(self):
        return self.suggestion()

    def plot(self):
        """Matplotlib figure of loss against learning rate (log scale), with the suggestion marked; the
        diverged tail is left out, so the scale shows the useful part."""
        suggestion = self.suggestion()
        n = max(self.kept(), min(len(self), 1))
        return plot_lr_finder(
            self.lr[:n], self.loss[:n], self.smoothed()[:n], None if math.isnan(suggestion) else suggestion
        )

    def __repr__(self):
        s = self.suggestion()
        return (
            (
                f"<LRFinderResult: {len(self)} steps, lr {self.lr[0]:.3g} .. {self.lr[-1]:.3g}"
                + ("" if math.isnan(s) else f", suggested lr {s:.3g}")
                + ">"
            )
            if self.lr
            else "<LRFinderResult: empty>"
        )


class LRFinderCallback(Callback):
    """Sets the learning rate of every optimizer before each batch and records lr and loss after it."""

    def __init__(self, lrs, start_lr, verbose=False, diverge_factor=None):
        self.lrs = lrs
        self.start_lr = start_lr
        self.diverge_factor = diverge_factor
        self.verbose = verbose
        self.lr, self.losses = [], {}
        self.bar = None

    def on_fit_begin(self):
        ctx = self.ctx
        self.i = 0
        self.first = next(iter(ctx.optimizers))
        self.lr, self.losses = [], {name: [] for name in ctx.optimizers}
        self.avg, self.best = 0.0, math.inf
        # Groups built with another lr (e.g. per-layer rates) keep their ratio to start_lr.
        self.base = [[g["lr"] for g in opt.param_groups] for opt in ctx.optimizers.values()]
        if self.verbose:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(self.lrs), desc="lr_finder", leave=False)

    def on_train_begin(self):
        if num_batches(self.ctx.data) == 0:  # nothing to train on: stop now (lr_finder raises)
            raise StopTraining()

    def on_train_end(self):
        if self.i == 0:  # a loader of unknown length that gave no batch
            raise StopTraining()

    def on_train_batch_begin(self):
        lr = self.lrs[self.i]
        for opt, bases in zip(self.ctx.optimizers.values(), self.base, strict=True):
            for group, base in zip(opt.param_groups, bases, strict=True):
                group["lr"] = lr if base == self.start_lr else base * (lr / self.start_lr)

    def on_train_batch_end(self):
        ctx = self.ctx
        self.lr.append(ctx.optimizers[self.first].param_groups[0]["lr"])
        loss = ctx.loss if isinstance(ctx.loss, dict) else {self.first: ctx.loss}
        for name, value in loss.items():
            self.losses.setdefault(name, []).append(float(value))
        self.i += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.i >= len(self.lrs) or self._diverged(self.losses[self.first][-1]):
            raise StopTraining()

    def _diverged(self, value):
        """`smooth_loss` and `diverged_at`'s rule, one point at a time (never with `diverge_factor=None`)."""
        if self.diverge_factor is None:
            return False
        if not math.isfinite(value):
            return True
        self.avg = 0.9 * self.avg + 0.1 * value
        smoothed = self.avg / (1 - 0.9**self.i)
        self.best = min(self.best, smoothed)
        return smoothed > self.diverge_factor * self.best

    def on_fit_end(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def lr_finder(
    luz_module: LuzModule,
    data: Any,
    steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 1e-1,
    log_spaced: bool = True,
    dataloader_options: dict | None = None,
    verbose: bool | None = None,
    diverge_factor: float | None = 4.0,
) -> LRFinderResult:
    """Train for `steps` batches with a learning rate growing from `start_lr` towards `end_lr` (luz's `lr_finder`).

    The learning rate of batch `k` (1-based) is `start_lr * (end_lr / start_lr) ** (k / steps)`
    (`log_spaced=True`, luz's sequence) or `start_lr + (end_lr - start_lr) * k / steps`; it is set on every
    parameter group of every optimizer, whatever their names. `lr` in the module's
    `opt_hparams` is overridden with `start_lr` (other optimizer arguments are kept).
    `dataloader_options` are passed to `fit`. A fresh model is trained; the module given is not
    changed. Training stops early when the loss diverges: at a non-finite loss, or once the
    smoothed loss exceeds `diverge_factor` times its lowest value (`None`: run all `steps`, as
    luz does; the R front end passes it). The
    suggestion is the steepest descent of the smoothed loss before its minimum. Returns an
    `LRFinderResult` (`lr`, `loss`, `to_frame()`, `plot()`, `suggested_lr`).

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> res = pyluz.lr_finder(pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
    ...                       .set_hparams(in_features=4, out_features=2),
    ...                       (x, y), steps=10, dataloader_options={"batch_size": 8}, verbose=False)
    >>> round(res.lr[0] / 1e-07, 3), len(res.loss)   # luz's rates: start_lr * m**k, k = 1..steps
    (3.981, 10)
    """
    owner = "lr_finder"
    check_type(luz_module, "luz_module", LuzModule, "the result of setup()", owner)
    steps = check_int(steps, "steps", owner, min_value=1)
    start_lr = check_positive(start_lr, "start_lr", owner)
    end_lr = check_real(
        end_lr, "end_lr", owner, lo=start_lr, lo_open=True, expected=f"greater than `start_lr` ({start_lr!r})"
    )
    check_bool(log_spaced, "log_spaced", owner)
    verbose = check_verbose(verbose, owner)
    if diverge_factor is not None:
        diverge_factor = check_real(
            diverge_factor, "diverge_factor", owner, lo=1, lo_open=True, expected="greater than 1 (or None)"
        )

    recorder = LRFinderCallback(lr_schedule(steps, start_lr, end_lr, log_spaced), start_lr, verbose, diverge_factor)
    module = luz_module.set_opt_hparams(**{**luz_module.opt_hparams, "lr": start_lr})
    if isinstance(module.module, torch.nn.Module):  # an already built model: train a copy, not the user's
        module = module._replace(module=copy.deepcopy(module.module))
    # Each epoch has at least one batch, so `steps` epochs always reach `steps` batches.
    module.fit(data, epochs=steps, callbacks=[recorder], verbose=False, dataloader_options=dataloader_options)
    if not recorder.lr:
        raise ValueError(
            "lr_finder: the data gave no training batch (is it smaller than the batch size with " "drop_last=True?)."
        )
    first = next(iter(recorder.losses))
    return LRFinderResult(recorder.lr, recorder.losses[first], recorder.losses, diverge_factor)
