"""Builds the Context for fit / evaluate / predict from the user's arguments and runs the loop.

The runner returns plain data (`FitRun`, records, predictions); the façade (`LuzModule.fit`,
`Fitted.evaluate`, `Fitted.predict`) wraps it in `Fitted` / `Evaluation`.
"""

import functools
import numbers
import time
from dataclasses import dataclass

import torch

from .accelerator import Accelerator, move_to_device
from .callbacks.base import check_callbacks, order_callbacks
from .callbacks.defaults import default_evaluate_callbacks, default_fit_callbacks, default_predict_callbacks
from .callbacks.progress import default_verbose
from .callbacks.trace_forward import TraceForward
from .checks import check_optional_bool, check_type, fail, is_integer, message
from .context import Context
from .control import CallbackError, ControlFlow, InputMismatchError, PeerFailure
from .data import HeldOut, TensorBatches, as_batches, num_batches, resolve, split_valid
from . import distributed
from .distributed import unwrap
from .loop import default_step, fit_loop, predict_loop, valid_loop
from .metrics import as_metric_set
from .interop.errors import strip_tags
from .nested import concat


@dataclass
class FitRun:
    """What a fit leaves: the trained module (unwrapped from DDP), its records, optimizer names and
    the optimizers' final `state_dict()`s (so a later fit can continue from them)."""

    model: object
    records: dict
    opt_names: list
    optimizer_states: dict | None = None
    capture: object = None  # the fit's TraceForward callback, if any (predict/evaluate reuse it)


def check_epochs(epochs):
    """An int n -> (0, n); a pair -> (min, max) with 0 <= min <= max, max >= 1."""

    if is_integer(epochs):
        min_epochs, max_epochs = 0, int(epochs)
    elif isinstance(epochs, (tuple, list)) and len(epochs) == 2 and all(is_integer(e) for e in epochs):
        min_epochs, max_epochs = int(epochs[0]), int(epochs[1])
    else:
        fail("epochs", "an int or a (min_epochs, max_epochs) pair of ints", epochs)
    if max_epochs < 1 or min_epochs < 0 or min_epochs > max_epochs:
        raise ValueError(
            message("epochs", "an int >= 1 or a pair with 0 <= min_epochs <= max_epochs, max_epochs >= 1", repr(epochs))
        )
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
        raise ValueError(
            f"`data` gives no training batch: it has fewer rows than batch_size={size} and training "
            "drops the last incomplete batch. Pass dataloader_options={'batch_size': ...} with a smaller "
            "size, or {'drop_last': False}."
        )


def outside_fit(loop, name, *args, argument="data"):
    """Run an evaluate/predict loop; the fit-only control flow (StopTraining, SkipEpoch) is a clear error.

    A first batch that doesn't fit the model is an InputMismatchError naming `argument`.
    """
    try:
        return loop(*args)
    except ControlFlow as e:
        raise RuntimeError(f"{type(e).__name__} was raised during {name}(); it only steers fit().") from e
    except Exception as e:
        clearer = explain_input_error(e, args[0], argument)
        if clearer is None:
            raise
        raise clearer from e


def check_given(data, argument, fn):
    """ValueError when `data` is None: evaluate()/predict() always need data."""
    if data is None:
        fail(argument, f"the data for {fn}() (tensors, arrays, a Dataset or a DataLoader)", data)


def model_step(model, ctx):
    """The module's own `step()`, or luz's default step bound to ctx."""
    step = getattr(model, "step", None)
    return step if callable(step) else functools.partial(default_step, ctx)


def put_forward_back(callbacks):
    """Every TraceForward among `callbacks` puts the model's own forward back (a run that raised too)."""
    for cb in callbacks:
        if isinstance(cb, TraceForward):
            cb.uninstall()


def attach_context(model, ctx):
    """Let the module read `self.ctx` during a run; cleared afterwards so it is never saved."""
    unwrap(model).ctx = ctx


def run_fit(
    luz_module,
    data,
    epochs=10,
    callbacks=None,
    valid_data=None,
    accelerator=None,
    verbose=None,
    dataloader_options=None,
    optimizer_states=None,
):
    """Train what `luz_module` (a `LuzModule`) builds; returns a `FitRun`. Arguments as in `pyluz.fit`.

    `data` / `valid_data` may be `pyluz.data.Deferred`: made after the model is built.

    `optimizer_states`: `{name: state_dict}` loaded into the fresh optimizers (continuing a fit).
    """
    called_at = time.perf_counter()
    min_epochs, max_epochs = check_epochs(epochs)
    user_callbacks = check_callbacks(callbacks)
    accelerator = check_accelerator(accelerator)
    verbose = check_verbose(verbose)
    metric_set = as_metric_set(luz_module.metrics)

    # luz's order: the model and its optimizers first, then `valid_data`, then `data`, so that
    # random numbers drawn while the data is made or split come after the initial weights.
    model = luz_module.build_model()
    optimizers = luz_module.build_optimizers(model)
    if optimizer_states is not None:
        load_optimizer_states(optimizers, optimizer_states)
    valid_data = resolve(valid_data)
    data = resolve(data)
    check_given(data, "data", "fit")
    if isinstance(valid_data, HeldOut):
        data, valid_data = split_valid(data, valid_data.fraction, sample=valid_data.sample)
    elif _is_fraction(valid_data):
        data, valid_data = split_valid(data, valid_data)
    pin = accelerator.pin_memory
    train = as_batches(data, dataloader_options, "train", "data", pin)
    check_has_batches(train)
    valid = as_batches(valid_data, dataloader_options, "valid", "valid_data", pin)
    if valid is not None and num_batches(valid) == 0:
        raise ValueError(
            "`valid_data` has no rows, so validation would compute nothing; pass validation data with "
            "rows, or leave `valid_data` out."
        )
    model, optimizers, train, valid = accelerator.prepare(model, optimizers, train, valid)

    defaults = default_fit_callbacks(metric_set)
    module = unwrap(model)  # the user's methods live on the module, not on a DDP wrapper
    ctx = Context(
        model=model,
        accelerator=accelerator,
        callbacks=order_callbacks(defaults + user_callbacks),
        verbose=verbose,
        training=True,
        optimizers=optimizers,
        loss_fn=luz_module.loss_fn(module),
        backward=luz_module.backward_fn(module),
        hparams=luz_module.hparams,
        opt_hparams=luz_module.opt_hparams,
    )
    ctx.train_data, ctx.valid_data = train, valid
    ctx.called_at = called_at
    ctx.min_epochs, ctx.max_epochs = min_epochs, max_epochs
    ctx.step = model_step(module, ctx)
    attach_context(model, ctx)
    distributed.begin_fit()
    optimizer_states = None
    try:
        fit_loop(ctx)
        optimizer_states = {name: opt.state_dict() for name, opt in ctx.optimizers.items()}
    except BaseException as error:
        clearer = explain_peer_failure(error) or explain_input_error(
            error, ctx, "data" if ctx.training else "valid_data"
        )
        keep_progress(clearer or error, module, ctx.records)
        if clearer is not None:
            raise clearer from error
        raise
    finally:
        attach_context(model, None)
        put_forward_back(user_callbacks)
        records = ctx.records
        ctx.clean()
    # Under DDP `model` is the DistributedDataParallel wrapper; the fitted model is the user's module.
    capture = next((cb for cb in user_callbacks if isinstance(cb, TraceForward)), None)
    return FitRun(
        model=module, records=records, opt_names=list(optimizers), optimizer_states=optimizer_states, capture=capture
    )


def load_optimizer_states(optimizers, states):
    """Load `{name: state_dict}` into `optimizers` (a dict by name); the names must be the same."""
    if list(states) != list(optimizers):
        raise ValueError(
            f"Continuing a fit needs the same optimizers: the fitted model had {list(states)}, the new fit "
            f"builds {list(optimizers)}."
        )
    for name, opt in optimizers.items():
        opt.load_state_dict(states[name])


def _describe(value, depth=0):
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)}, {str(value.dtype).replace('torch.', '')}"
    if value is None:
        return "None"
    if isinstance(value, (list, tuple)) and depth < 1:
        parts = ", ".join(_describe(v, depth + 1) for v in value[:4])
        return f"{type(value).__name__} of [{parts}{', ...' if len(value) > 4 else ''}]"
    if isinstance(value, dict) and depth < 1:
        parts = ", ".join(f"{k!r}: {_describe(v, depth + 1)}" for k, v in list(value.items())[:4])
        return f"dict of {{{parts}}}"
    return type(value).__name__


def _model_expects(model):
    """What the model's first layer takes, in words (None when it has no recognisable first layer)."""
    model = unwrap(model)
    dtype = next((p.dtype for p in model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    dtype = f"; its parameters are {str(dtype).replace('torch.', '')}" if dtype is not None else ""
    if not isinstance(model, torch.nn.Module):
        return None
    for name, layer in model.named_modules():
        for attr, what in (
            ("in_features", "input features (the last dim)"),
            ("in_channels", "input channels (dim 1)"),
            ("num_embeddings", "as the number of embeddings (integer indices below it)"),
        ):
            n = getattr(layer, attr, None)
            if isinstance(n, int):
                layer_name = (
                    f"its first layer `{name}` ({type(layer).__name__})"
                    if name
                    else f"the model ({type(layer).__name__})"
                )
                return f"{layer_name} expects {n} {what}{dtype}"
    return dtype[2:] or None


# Errors torch raises when a batch doesn't fit the model or the loss (shapes, dtypes, a missing target).
_MISMATCH_HINTS = (
    "shapes cannot be multiplied",
    "same dtype",
    "size mismatch",
    "must match the size",
    "expected input",
    "Expected input",
    "expected scalar type",
    "Input type",
    "should be the same",
    "Expected target",
    "Target size",
    "target size",
    "input of size",
    "channels",
    "NoneType",
    "dimension",
    "Expected floating point",
    "not implemented for",
    "out of range",
    "index out of bounds",
)


def explain_input_error(error, ctx, argument):
    """An InputMismatchError naming `argument` for an error in the first batch of a phase, else None.

    Only the first batch of a phase is explained (iter 1): a shape or dtype mismatch between the
    data and the model shows up there, and later errors are the model's own. Callback and metric
    errors already say where they come from.
    """
    if (
        not isinstance(error, (RuntimeError, TypeError, ValueError, IndexError, AttributeError))
        or isinstance(error, (CallbackError, ControlFlow, InputMismatchError))
        or getattr(ctx, "iter", 0) != 1
        or not any(hint in str(error) for hint in _MISMATCH_HINTS)
    ):
        return None
    batch_input, target = getattr(ctx, "input", None), getattr(ctx, "target", None)
    if batch_input is None and target is None:
        return None
    expects = _model_expects(ctx.model)
    parts = [f"The first batch of `{argument}` did not fit the model or the loss: input {_describe(batch_input)}"]
    if argument != "newdata":
        parts.append(f", target {_describe(target)}")
    parts.append(f"; {expects}." if expects else ".")
    if argument != "newdata" and target is None:
        parts.append(
            f" `{argument}` gives no target: pass `(x, y)` (a list `[x]`, a tuple `(x,)` or `x` alone has "
            "only inputs)."
        )
    params = (
        next((p for p in unwrap(ctx.model).parameters()), None)
        if isinstance(unwrap(ctx.model), torch.nn.Module)
        else None
    )
    takes_indices = (
        any(isinstance(m, torch.nn.Embedding) for m in unwrap(ctx.model).modules())
        if isinstance(unwrap(ctx.model), torch.nn.Module)
        else False
    )
    if (
        isinstance(batch_input, torch.Tensor)
        and params is not None
        and params.is_floating_point()
        and batch_input.dtype != params.dtype
        and not takes_indices
    ):
        wanted = str(params.dtype).replace("torch.", "")
        parts.append(
            f" The input is {str(batch_input.dtype).replace('torch.', '')} but the model computes in "
            f"{wanted}: convert it first (e.g. `x.to(torch.{wanted})`)."
        )
    parts.append(f" ({type(error).__name__}: {error})")
    return InputMismatchError("".join(parts))


def explain_peer_failure(error):
    """Under DDP: a `PeerFailure` when another rank failed first (this rank's collective broke because
    of it), else None, after leaving this rank's own error for the others."""
    if not distributed.is_initialized():
        return None
    peer = distributed.peer_failure() if distributed.broken_collective(error) else None
    if peer is not None:
        return PeerFailure(*peer)
    # Tags name R conditions stored in this process only: the other ranks get the plain text.
    message = strip_tags(error)  # a CallbackError's message already says what and where
    distributed.report_failure(message if isinstance(error, CallbackError) else f"{type(error).__name__}: {message}")
    return None


def keep_progress(error, model, records):
    """Attach what a failed fit had done to the error it raises: `.records` (the finished epochs) and `.model`.

    The error keeps its type (CallbackError, or the model's own error), so `except` clauses users
    already have still catch it; they read `error.records` / `error.model` to keep the work.

    Example::

        try:
            fitted = model.fit(data, epochs=100)
        except Exception as e:
            records, trained = getattr(e, "records", None), getattr(e, "model", None)
    """
    try:
        error.records = records
        error.model = model
    except (AttributeError, TypeError):  # an exception type without a __dict__
        pass


def _eval_context(fitted, callbacks, defaults, accelerator, verbose):
    accelerator = check_accelerator(accelerator)
    model = accelerator.prepare_model(fitted.model)
    ctx = Context(
        model=model,
        accelerator=accelerator,
        callbacks=order_callbacks(defaults + check_callbacks(callbacks)),
        verbose=check_verbose(verbose),
        training=False,
        optimizers={name: None for name in fitted.opt_names},
        loss_fn=fitted.luz_module.loss_fn(model),
        hparams=fitted.hparams,
        opt_hparams=fitted.opt_hparams,
    )
    ctx.epoch = ctx.min_epochs = ctx.max_epochs = 1
    return ctx


def run_evaluate(fitted, data, metrics=None, callbacks=None, accelerator=None, verbose=None, dataloader_options=None):
    """One validation pass of `fitted` over `data`; returns the records."""
    metric_set = as_metric_set(fitted.luz_module.metrics if metrics is None else metrics)
    defaults = default_evaluate_callbacks(metric_set)
    ctx = _eval_context(fitted, callbacks, defaults, accelerator, verbose)
    if ctx.loss_fn is None and not callable(getattr(ctx.model, "step", None)):
        raise ValueError(
            "evaluate() needs a loss, but this model has none (e.g. it was loaded without one): "
            "pass `loss=` to pyluz.load()."
        )
    check_given(data, "data", "evaluate")
    loader = as_batches(data, dataloader_options, "valid", "data", ctx.accelerator.pin_memory)
    ctx.data = ctx.valid_data = ctx.accelerator.prepare_loader(loader)
    ctx.step = model_step(ctx.model, ctx)
    attach_context(ctx.model, ctx)
    try:
        outside_fit(valid_loop, "evaluate", ctx, argument="data")
    finally:
        attach_context(ctx.model, None)
        put_forward_back(ctx.callbacks)
        records = ctx.records
        ctx.clean()
    return records


def run_predict(
    fitted, newdata, stack=True, callbacks=None, accelerator=None, verbose=None, dataloader_options=None, **kwargs
):
    """The outputs of `fitted`'s model over `newdata`: stacked (`stack=True`) or the per-batch list."""
    check_given(newdata, "newdata", "predict")
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
        preds = outside_fit(predict_loop, "predict", ctx, predict_fn, kwargs, argument="newdata")
        if not preds and isinstance(loader, TensorBatches) and loader.n == 0:
            preds = [predict_zero_rows(ctx, loader, predict_fn, kwargs)]
    finally:
        attach_context(model, None)
        put_forward_back(ctx.callbacks)
        ctx.clean()
    return stack_predictions(preds) if stack else preds


def predict_zero_rows(ctx, loader, predict_fn, kwargs):
    """The model's output for 0 rows (e.g. shape (0, C)), so predicting nothing has the usual columns."""
    batch = loader.take(slice(0, 0))
    ctx.batch = move_to_device(batch, ctx.accelerator.device) if ctx.accelerator.device_placement else batch
    with torch.no_grad():
        return predict_fn(ctx.input, **kwargs)


def stack_predictions(preds):
    """Concatenate per-batch outputs along dim 0 (tensors, or the same nested tuples/dicts of tensors); else the list."""
    return concat(preds)
