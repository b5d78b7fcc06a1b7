"""`MixedPrecision` (luz_callback_mixed_precision): autocast + gradient scaling."""

import inspect

import torch

from .base import Callback
from .gradients import GRAD_SCALER


class MixedPrecision(Callback):
    """Trains with automatic mixed precision (luz's `luz_callback_mixed_precision`).

    On CUDA the forward pass and the loss run under `torch.autocast` in float16 and a
    `torch.amp.GradScaler("cuda", **scaler_kwargs)` scales the loss before backward and steps the
    optimizer (`scaler.step(opt); scaler.update()`, which skips steps with inf/NaN gradients). On
    other devices (CPU) autocast uses bfloat16 and no scaler is needed. Autocast covers each
    forward pass and its loss (it ends at `on_train_batch_after_loss`; backward, the optimizer
    step and metrics run in full precision) and the validation forward pass. The parameters stay
    float32. torch's GradScaler checks the gradients for inf/NaN at each step, which reads one
    value back from the GPU per step.

    `scaler_kwargs` go to `torch.amp.GradScaler` (`init_scale`, `growth_factor`, `backoff_factor`,
    `growth_interval`, `enabled`). The scaler is in `ctx.buffers["grad_scaler"]` during the fit
    (`GradientClip` unscales with it before clipping).

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> fitted = model.fit((x, y), epochs=1, verbose=False, callbacks=[pyluz.callbacks.MixedPrecision()])

    (On CPU autocast uses bfloat16 and no gradient scaler; `init_scale=2.0**10` sets the CUDA scaler's start.)
    """

    def __init__(self, **scaler_kwargs):
        try:
            inspect.signature(torch.amp.GradScaler).bind("cuda", **scaler_kwargs)
        except TypeError as e:
            allowed = [p for p in inspect.signature(torch.amp.GradScaler).parameters if p != "device"]
            raise TypeError(
                f"MixedPrecision: `scaler_kwargs` must be arguments of torch.amp.GradScaler "
                f"({', '.join(allowed)}), got {sorted(scaler_kwargs)}."
            ) from e
        self.scaler_kwargs = scaler_kwargs
        self.scaler = None
        self._autocast = None

    # -- set up / tear down -------------------------------------------------------------------
    def on_fit_begin(self):
        ctx = self.ctx
        self.device_type = torch.device(ctx.device).type
        self.dtype, self.scaler = self.precision(self.device_type)
        ctx.buffers[GRAD_SCALER] = self.scaler
        self._last_opt = list(ctx.optimizers)[-1] if ctx.optimizers else None
        self._inner_step_opt, ctx.step_opt = ctx.step_opt, self._step_opt
        self._inner_step, ctx.step = ctx.step, self._step

    def precision(self, device_type):
        """(autocast dtype, GradScaler or None) for a device type: fp16 + scaler on CUDA, else bf16."""
        if device_type == "cuda":
            return torch.float16, torch.amp.GradScaler("cuda", **self.scaler_kwargs)
        return torch.bfloat16, None

    def on_fit_end(self):
        ctx = self.ctx
        self._exit()
        if ctx.step == self._step:
            ctx.step = self._inner_step
        if ctx.step_opt == self._step_opt:
            ctx.step_opt = self._inner_step_opt
        ctx.buffers.pop(GRAD_SCALER, None)
        self._inner_step = self._inner_step_opt = None  # they may hold the fit's context

    # -- autocast -----------------------------------------------------------------------------
    def _enter(self):
        if self._autocast is None:
            self._autocast = torch.autocast(device_type=self.device_type, dtype=self.dtype)
            self._autocast.__enter__()

    def _exit(self):
        if self._autocast is not None:
            autocast, self._autocast = self._autocast, None
            autocast.__exit__(None, None, None)

    def _step(self):
        # Autocast from the start of the step; always left when the step ends, even on errors,
        # so it never leaks into the caller's code.
        self._enter()
        try:
            self._inner_step()
        finally:
            self._exit()

    def on_train_batch_after_loss(self):
        self._exit()

    def on_train_batch_after_step(self):
        # The default step re-runs the forward pass for each further optimizer.
        if self.ctx.opt_name != self._last_opt:
            self._enter()

    # -- gradient scaling ---------------------------------------------------------------------
    def on_train_batch_before_backward(self):
        if self.scaler is not None:
            with torch.enable_grad():
                self.ctx.loss_grad = self.scaler.scale(self.ctx.loss_grad)

    def _step_opt(self, opt):
        if self.scaler is None:
            return self._inner_step_opt(opt)
        self.scaler.step(opt)
        self.scaler.update()
        return None

    def state_dict(self):
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else None

    def load_state_dict(self, state):
        if state and self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
