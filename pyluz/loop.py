"""The loops (fit, validation, predict) and the default step. Only the math and the breakpoints.

Reads like luz's loop (the contract is in docs/loop.md); callbacks do everything else (modes, metrics, progress, timing, control).
"""

import torch

from .context import check_batch_keys
from .control import CallbackError, ControlFlow, SkipEpoch, StopTraining


def fit_loop(ctx):
    call = ctx.call_callbacks
    try:
        call("on_fit_begin")  # a StopTraining here ends the fit before its first epoch
        for epoch in range(1, ctx.max_epochs + 1):
            ctx.epoch = epoch
            try:
                run_epoch(ctx)
            except SkipEpoch:
                continue
    except StopTraining:
        while_stopping(call, "on_early_stopping")
    except (Exception, KeyboardInterrupt) as error:
        handler = find_handler(ctx.handlers, error)
        if handler is None:
            raise
        while_stopping(handler, error)
    while_stopping(call, "on_fit_end")


def while_stopping(fn, arg):
    """Run `fn(arg)` while the fit ends anyway: a StopTraining raised there has nothing left to stop."""
    try:
        fn(arg)
    except StopTraining:
        pass


def find_handler(handlers, error):
    """The handler registered in `ctx.handlers` for this exception's type (or a base of it)."""
    for kind, handler in handlers.items():
        if isinstance(error, kind):
            return handler
    return None


def run_epoch(ctx):
    call, step = ctx.call_callbacks, ctx.step
    ctx.iter = 0
    ctx.data = ctx.train_data
    call("on_epoch_begin")
    call("on_train_begin")
    try:
        for batch in ctx.train_data:
            ctx.batch = batch
            ctx.iter += 1
            call("on_train_batch_begin")
            step()
            call("on_train_batch_end")
    except Exception as error:
        note_where(error, ctx, "training")
        raise
    call("on_train_end")
    if ctx.valid_data is not None:
        ctx.data = ctx.valid_data
        valid_loop(ctx)
    call("on_epoch_end")


def valid_loop(ctx):
    call, step = ctx.call_callbacks, ctx.step
    with torch.no_grad():
        call("on_valid_begin")
        ctx.iter = 0
        try:
            for batch in ctx.data:
                ctx.batch = batch
                ctx.iter += 1
                call("on_valid_batch_begin")
                step()
                call("on_valid_batch_end")
        except Exception as error:
            note_where(error, ctx, "validation")
            raise
        call("on_valid_end")


def predict_loop(ctx, predict_fn, kwargs):
    call = ctx.call_callbacks
    preds = []
    with torch.no_grad():
        call("on_predict_begin")
        ctx.iter = 0
        for batch in ctx.data:
            ctx.batch = batch
            ctx.iter += 1
            call("on_predict_batch_begin")
            ctx.pred = predict_fn(ctx.input, **kwargs)
            preds.append(ctx.pred)
            call("on_predict_batch_end")
        call("on_predict_end")
    return preds


def note_where(error, ctx, phase):
    """Say where a model/step error happened, keeping its type (callback errors already say it)."""
    if not isinstance(error, (ControlFlow, CallbackError)) and hasattr(error, "add_note"):  # notes: Python 3.11+
        error.add_note(f"pyluz: raised during {phase} at epoch {ctx.epoch}, iter {ctx.iter}.")


def default_step(ctx):
    """luz's step: train (one forward, loss, backward, step per optimizer) or validation."""
    if ctx.target is None:
        check_batch_keys(ctx.batch)  # a dict batch it can't split is an error, not a None target
    if ctx.training:
        train_step(ctx)
    else:
        valid_step(ctx)


def train_step(ctx):
    call = ctx.call_callbacks
    for name, opt in ctx.optimizers.items():
        ctx.pred = ctx.model(ctx.input)
        call("on_train_batch_after_pred")
        ctx.opt, ctx.opt_name = opt, name
        ctx.loss_grad = ctx.loss_fn(ctx.pred, ctx.target)
        ctx.loss[name] = ctx.loss_grad.detach()
        call("on_train_batch_after_loss")
        call("on_train_batch_before_backward")
        ctx.backward(ctx.loss_grad)
        call("on_train_batch_before_step")
        if ctx.step_opt(opt) is not False:  # False: the step was held back (gradient accumulation)
            opt.zero_grad()
        call("on_train_batch_after_step")


def valid_step(ctx):
    call = ctx.call_callbacks
    for name, opt in ctx.optimizers.items():
        ctx.opt, ctx.opt_name = opt, name  # both name the same optimizer (luz left `opt` at the last one)
        ctx.pred = ctx.model(ctx.input)
        call("on_valid_batch_after_pred")
        ctx.loss[name] = ctx.loss_fn(ctx.pred, ctx.target)
        call("on_valid_batch_after_loss")
