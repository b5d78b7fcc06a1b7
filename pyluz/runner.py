"""Builds the Context for fit / evaluate / predict from the user's arguments and runs the loop.

The runner returns plain data (`FitRun`, records, predictions); the façade (`LuzModule.fit`,
`Fitted.evaluate`, `Fitted.predict`) wraps it in `Fitted` / `Evaluation`.
"""

import functools
import numbers
from dataclasses import dataclass

from .accelerator import Accelerator
from .callbacks.base import check_callbacks, order_callbacks
from .callbacks.defaults import default_evaluate_callbacks, default_fit_callbacks, default_predict_callbacks
from .callbacks.progress import default_verbose
from .checks import check_optional_bool, check_type
from .context import Context
from .control import ControlFlow
from .data import as_batches, num_batches, split_valid
from .distributed import unwrap
from .loop import default_step, fit_loop, predict_loop, valid_loop
from .metrics import as_metric_set
from .nested import concat


@dataclass
class FitRun:
    """What a fit leaves: the trained module (unwrapped from DDP), its records and optimizer names."""

    model: object
    records: dict
    opt_names: list


def check_epochs(epochs):
    """An int n -> (0, n); a pair -> (min, max) with 0 <= min <= max, max >= 1."""
    def is_int(x):
        return isinstance(x, numbers.Integral) and not isinstance(x, bool) or (isinstance(x, float) and x.is_integer())

    if is_int(epochs):
        min_epochs, max_epochs = 0, int(epochs)
    elif isinstance(epochs, (tuple, list)) and len(epochs) == 2 and all(is_int(e) for e in epochs):
        min_epochs, max_epochs = int(epochs[0]), int(epochs[1])
    else:
        raise ValueError(f"`epochs` must be an int or a (min_epochs, max_epochs) pair of ints, got {epochs!r}.")
    if max_epochs < 1 or min_epochs < 0 or min_epochs > max_epochs:
        raise ValueError(f"`epochs` must satisfy 0 <= min_epochs <= max_epochs and max_epochs >= 1, got {epochs!r}.")
    return min_epochs, max_epochs


def check_accelerator(accelerator):
    if accelerator is None:
        return Accelerator()
    return check_type(accelerator, "accelerator", Accelerator, "a pyluz.Accelerator")


def check_verbose(verbose, owner=None):
    verbose = check_optional_bool(verbose, "verbose", owner)
    return default_verbose() if verbose is None else verbose


def _is_fraction(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_has_batches(loader):
    """An epoch without a single training batch is a mistake worth saying (luz trains nothing)."""
    if num_batches(loader) == 0:
        size = getattr(loader, "batch_size", None)
        raise ValueError(f"`data` gives no training batch: it has fewer rows than batch_size={size} and training "
                         "drops the last incomplete batch. Pass dataloader_options={'batch_size': ...} with a smaller "
                         "size, or {'drop_last': False}.")


def outside_fit(loop, name, *args):
    """Run an evaluate/predict loop; the fit-only control flow (StopTraining, SkipEpoch) is a clear error."""
    try:
        return loop(*args)
    except ControlFlow as e:
        raise RuntimeError(f"{type(e).__name__} was raised during {name}(); it only steers fit().") from e


def model_step(model, ctx):
    """The module's own `step()`, or luz's default step bound to ctx."""
    step = getattr(model, "step", None)
    return step if callable(step) else functools.partial(default_step, ctx)


def attach_context(model, ctx):
    """Let the module read `self.ctx` during a run; cleared afterwards so it is never saved."""
    unwrap(model).ctx = ctx


def run_fit(luz_module, data, epochs=10, callbacks=None, valid_data=None, accelerator=None, verbose=None,
            dataloader_options=None):
    """Train what `luz_module` (a `LuzModule`) builds; returns a `FitRun`. Arguments as in `pyluz.fit`."""
    min_epochs, max_epochs = check_epochs(epochs)
    user_callbacks = check_callbacks(callbacks)
    accelerator = check_accelerator(accelerator)
    verbose = check_verbose(verbose)
    metric_set = as_metric_set(luz_module.metrics)
    if data is None:
        raise ValueError("`data` is required: pass a DataLoader, Dataset, tensors or arrays.")
    if _is_fraction(valid_data):
        data, valid_data = split_valid(data, valid_data)

    model = luz_module.build_model()
    optimizers = luz_module.build_optimizers(model)
    pin = accelerator.pin_memory
    train = as_batches(data, dataloader_options, "train", "data", pin)
    check_has_batches(train)
    valid = as_batches(valid_data, dataloader_options, "valid", "valid_data", pin)
    model, optimizers, train, valid = accelerator.prepare(model, optimizers, train, valid)

    defaults = default_fit_callbacks(metric_set)
    module = unwrap(model)  # the user's methods live on the module, not on a DDP wrapper
    ctx = Context(model=model, accelerator=accelerator, callbacks=order_callbacks(defaults + user_callbacks),
                  verbose=verbose, training=True, optimizers=optimizers, loss_fn=luz_module.loss_fn(module),
                  backward=luz_module.backward_fn(module), hparams=luz_module.hparams,
                  opt_hparams=luz_module.opt_hparams)
    ctx.train_data, ctx.valid_data = train, valid
    ctx.min_epochs, ctx.max_epochs = min_epochs, max_epochs
    ctx.step = model_step(module, ctx)
    attach_context(model, ctx)
    try:
        fit_loop(ctx)
    finally:
        attach_context(model, None)
        records = ctx.records
        ctx.clean()
    # Under DDP `model` is the DistributedDataParallel wrapper; the fitted model is the user's module.
    return FitRun(model=module, records=records, opt_names=list(optimizers))


def _eval_context(fitted, callbacks, defaults, accelerator, verbose):
    accelerator = check_accelerator(accelerator)
    model = accelerator.prepare_model(fitted.model)
    ctx = Context(model=model, accelerator=accelerator,
                  callbacks=order_callbacks(defaults + check_callbacks(callbacks)),
                  verbose=check_verbose(verbose), training=False,
                  optimizers={name: None for name in fitted.opt_names},
                  loss_fn=fitted.luz_module.loss_fn(model), hparams=fitted.hparams, opt_hparams=fitted.opt_hparams)
    ctx.epoch = ctx.min_epochs = ctx.max_epochs = 1
    return ctx


def run_evaluate(fitted, data, metrics=None, callbacks=None, accelerator=None, verbose=None, dataloader_options=None):
    """One validation pass of `fitted` over `data`; returns the records."""
    metric_set = as_metric_set(fitted.luz_module.metrics if metrics is None else metrics)
    defaults = default_evaluate_callbacks(metric_set)
    ctx = _eval_context(fitted, callbacks, defaults, accelerator, verbose)
    if ctx.loss_fn is None and not callable(getattr(ctx.model, "step", None)):
        raise ValueError("evaluate() needs a loss, but this model has none (e.g. it was loaded without one): "
                         "pass `loss=` to pyluz.load().")
    loader = as_batches(data, dataloader_options, "valid", "data", ctx.accelerator.pin_memory)
    ctx.data = ctx.valid_data = ctx.accelerator.prepare_loader(loader)
    ctx.step = model_step(ctx.model, ctx)
    attach_context(ctx.model, ctx)
    try:
        outside_fit(valid_loop, "evaluate", ctx)
    finally:
        attach_context(ctx.model, None)
        records = ctx.records
        ctx.clean()
    return records


def run_predict(fitted, newdata, stack=True, callbacks=None, accelerator=None, verbose=None,
                dataloader_options=None, **kwargs):
    """The outputs of `fitted`'s model over `newdata`: stacked (`stack=True`) or the per-batch list."""
    ctx = _eval_context(fitted, callbacks, default_predict_callbacks(), accelerator, verbose)
    loader = as_batches(newdata, dataloader_options, "predict", "newdata", ctx.accelerator.pin_memory)
    ctx.data = ctx.accelerator.prepare_loader(loader)
    model = ctx.model
    model.eval()
    predict_fn = getattr(model, "predict", None)
    if not callable(predict_fn):
        predict_fn = model
    attach_context(model, ctx)
    try:
        preds = outside_fit(predict_loop, "predict", ctx, predict_fn, kwargs)
    finally:
        attach_context(model, None)
        ctx.clean()
    return stack_predictions(preds) if stack else preds


def stack_predictions(preds):
    """Concatenate per-batch outputs along dim 0 (tensors, or the same nested tuples/dicts of tensors); else the list."""
    return concat(preds)
