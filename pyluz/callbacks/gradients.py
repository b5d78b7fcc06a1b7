"""Gradient callbacks: `GradientClip` (luz_callback_gradient_clip), `GradientAccumulation`, `TerminateOnNaN`."""

import math
import numbers
import sys

import torch

from ..checks import check_int
from ..control import StopTraining
from ..data import num_batches
from ..distributed import any_rank, is_main_process
from .base import Callback

#: `ctx.buffers` key: True while GradientAccumulation holds back the current batch's optimizer step.
HOLDING_STEP = "gradient_accumulation_holding"
#: `ctx.buffers` key: the `torch.amp.GradScaler` of MixedPrecision (None when it uses none).
GRAD_SCALER = "grad_scaler"


def _is_number(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


class GradientClip(Callback):
    """Clips the gradient norm of the model's parameters before each optimizer step (luz_callback_gradient_clip).

    Calls `torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm, norm_type)` at
    `on_train_batch_before_step`. Under `MixedPrecision` with a gradient scaler the gradients are
    unscaled first; under `GradientAccumulation` only the accumulated gradient is clipped, once,
    right before the real step. `max_norm=0` zeroes the gradients (no learning).

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> fitted = model.fit((x, y), epochs=1, verbose=False, callbacks=[pyluz.callbacks.GradientClip(max_norm=1.0)])
    """

    def __init__(self, max_norm=1, norm_type=2):
        if not _is_number(max_norm) or not max_norm >= 0 or not math.isfinite(max_norm):
            raise ValueError(f"GradientClip: `max_norm` should be a numeric scalar value >= 0, got {max_norm!r}.")
        if norm_type in ("inf", "Inf"):
            norm_type = math.inf
        if not _is_number(norm_type) or not norm_type > 0:
            raise ValueError(
                "GradientClip: `norm_type` should be a positive numeric scalar value (or inf), " f"got {norm_type!r}."
            )
        self.max_norm = float(max_norm)
        self.norm_type = float(norm_type)

    def on_train_batch_before_step(self):
        ctx = self.ctx
        if ctx.buffers.get(HOLDING_STEP):
            return
        scaler = ctx.buffers.get(GRAD_SCALER)
        if scaler is not None and scaler.is_enabled():
            scaler.unscale_(ctx.opt)
        torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), self.max_norm, self.norm_type)


class GradientAccumulation(Callback):
    """Steps the optimizers every `steps` batches, so the update matches one step on a `steps` times bigger batch.

    The loss that is backpropagated (`ctx.loss_grad`) is divided by the number of batches in the
    accumulation group (`steps`, or fewer for the last group of an epoch); `ctx.loss` and the
    metrics keep the unscaled loss. The optimizers step at every `steps`-th batch and at the last
    batch of each epoch; groups never span epochs. With a mean-reduced loss and equal batch
    sizes, `k` accumulated batches of size `b` give the same update as one batch of size `k * b`.
    When the loader's length is unknown (iterable datasets) a last group smaller than `steps` is
    rescaled and applied at `on_train_end`. Works with luz's default step (a module's own `step()`
    does its own accumulation). A per-batch `LRScheduler` steps only when the optimizers step, so
    size its schedule in optimizer steps (`ceil(n_batches / steps)` per epoch).

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> fitted = model.fit((x, y), epochs=1, verbose=False, dataloader_options={"batch_size": 8},
    ...                    callbacks=[pyluz.callbacks.GradientAccumulation(steps=4)])  # batches of 8, updates as with 32
    """

    def __init__(self, steps):
        self.steps = check_int(steps, "steps", "GradientAccumulation", min_value=1)
        self._inner_step_opt = None

    def on_train_begin(self):
        ctx = self.ctx
        # Wrapped here (not at fit begin) so a step_opt set by another callback at fit begin
        # (MixedPrecision's scaler step) is the one that runs when we do step.
        self._inner_step_opt = ctx.step_opt
        ctx.step_opt = self._step_opt
        self.n_batches = num_batches(ctx.data)
        self.group_start = 1  # iter of the first batch of the current group
        self.pending = 0  # batches whose gradients are accumulated but not yet applied

    def on_train_batch_begin(self):
        ctx = self.ctx
        it = ctx.iter
        if self.pending == 0:
            self.group_start = it
        last_of_group = (it - self.group_start + 1) >= self.steps or (
            self.n_batches is not None and it >= self.n_batches
        )
        self.holding = not last_of_group
        ctx.buffers[HOLDING_STEP] = self.holding
        # Number of batches in this group: known unless the loader's length is unknown.
        if self.n_batches is None:
            self.group_size = self.steps
        else:
            self.group_size = min(self.steps, self.n_batches - self.group_start + 1)

    def on_train_batch_before_backward(self):
        ctx = self.ctx
        if self.group_size != 1:
            ctx.loss_grad = ctx.loss_grad / self.group_size

    def _step_opt(self, opt):
        if self.holding:
            return False
        return self._inner_step_opt(opt)

    def on_train_batch_end(self):
        self.pending = 0 if not self.holding else self.pending + 1

    def state_dict(self):
        # Where the epoch in progress is in its accumulation cycle, with the gradients accumulated
        # so far (for a checkpoint inside an epoch; at an epoch's end nothing is pending).
        pending = int(getattr(self, "pending", 0))
        grads = None
        if pending and self.ctx is not None:
            grads = [None if p.grad is None else p.grad.detach().clone() for p in self._params()]
        return {"group_start": int(getattr(self, "group_start", 1)), "pending": pending, "grads": grads}

    def load_state_dict(self, state):
        self.group_start, self.pending = int(state["group_start"]), int(state["pending"])
        grads = state.get("grads")
        if grads is not None and self.ctx is not None:
            for p, g in zip(self._params(), grads, strict=True):
                p.grad = None if g is None else g.to(device=p.device, dtype=p.dtype).clone()

    def _params(self):
        return [p for opt in self.ctx.optimizers.values() for group in opt.param_groups for p in group["params"]]

    def on_train_end(self):
        ctx = self.ctx
        ctx.step_opt = self._inner_step_opt
        ctx.buffers[HOLDING_STEP] = False
        if self.pending:
            # Unknown length: the last group was smaller than `steps`; rescale and apply it.
            factor = self.steps / self.pending
            for opt in ctx.optimizers.values():
                for group in opt.param_groups:
                    for p in group["params"]:
                        if p.grad is not None:
                            p.grad.mul_(factor)
                if ctx.step_opt(opt) is not False:
                    opt.zero_grad()
            self.pending = 0


class TerminateOnNaN(Callback):
    """Stops training cleanly when a training batch's loss is NaN or infinite.

    Checked right after the loss is computed (`on_train_batch_after_loss`), before backward and
    the optimizer step, so the model keeps the last finite weights; with a module's own `step()`
    it is checked at `on_train_batch_end`. Training then ends like early stopping
    (`on_early_stopping`, `on_fit_end`) and `fit` returns the model and the records of the
    completed epochs. `stopped_at` holds `(epoch, iter)`. The check reads the loss on the host
    once per batch (one device sync per step).

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> cb = pyluz.callbacks.TerminateOnNaN()
    >>> fitted = model.fit((x, y), epochs=2, verbose=False, callbacks=[cb])
    >>> cb.stopped_at is None    # else (epoch, iter) of the non-finite loss
    True
    """

    def __init__(self):
        self.stopped_at = None
        self._checked = False

    def on_fit_begin(self):
        self.stopped_at = None

    def _check(self, losses):
        self._checked = True
        # Under DDP every rank must stop together, so the decision is shared (any rank's NaN stops all).
        if any_rank(not all(_finite(v) for v in losses)):
            ctx = self.ctx
            self.stopped_at = (ctx.epoch, ctx.iter)
            if ctx.verbose and is_main_process():
                print(f"Terminating: the loss is not finite at epoch {ctx.epoch}, iter {ctx.iter}.", file=sys.stderr)
            raise StopTraining()

    def on_train_batch_begin(self):
        self._checked = False

    def on_train_batch_after_loss(self):
        ctx = self.ctx
        self._check([ctx.loss[ctx.opt_name]])

    def on_train_batch_end(self):
        if not self._checked:
            loss = self.ctx.loss
            self._check(list(loss.values()) if isinstance(loss, dict) else [loss])


def _finite(value):
    if value is None:
        return True
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value.detach()).all())
    return math.isfinite(float(value))
