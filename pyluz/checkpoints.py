"""Training checkpoints: model, optimizers, callback states, records, epoch and RNG states.

Written with `torch.save` (through `torch_save`'s leaner pickler: the same file) and an atomic
temp-file rename, read back with `torch.load(weights_only=True)`, so a checkpoint holds only tensors and plain data and a crafted
file can't run code.

Format (`write_checkpoint`, ModelCheckpoint, AutoResume): a `torch.save` file holding only
tensors, numbers, strings, None and dicts/lists/tuples::

    {"format": "pyluz-checkpoint", "format_version": 1, "epoch": 3,
     "model": state_dict, "optimizers": {name: optimizer.state_dict()},
     "callbacks": [{"name": "EarlyStopping", "state": {...} | None}, ...],   # every callback, in order
     "records": {...},
     "rng": {"python": {"version", "state" (int64 tensor), "gauss_next"},
             "numpy": {"kind", "keys" (int64 tensor), "pos", "has_gauss", "cached_gaussian"},
             "torch": ByteTensor, "cuda": [ByteTensor, ...] (when CUDA was in use),
             "generators": {"train"|"valid": ByteTensor} (torch.Generators the loaders use)},
     "hparams": {...}, "opt_hparams": {...},   # as JSON-like values (model_file.to_json), for AutoResume
     "position": {"epoch": 4, "consumed": 120, "epoch_rng": {...}, "metrics": [metric.state_dict(), ...]}}
     # "position" only in checkpoints AutoResume takes inside an epoch ("epoch" then counts the
     # finished ones); "rng" may also hold "sources" (e.g. R's .Random.seed, see rng.register_rng_source)

It is written to a temporary file in the same directory, flushed to disk and renamed over the
target with `os.replace`, so a crash at any moment leaves either the old or the new checkpoint.
"""

import collections.abc
import numbers
import warnings

import numpy as np
import torch
from torch import nn

from .checks import check_bool, message
from .context import Context
from . import torch_save
from .distributed import unwrap
from .files import atomic_write, check_existing, looks_like_safetensors, torch_load
from .model_file import FORMAT_VERSION, from_json, has_repr, load_state, model_of, to_json
from .records import check_records, empty_records
from .rng import get_rng_states, set_rng_states

CHECKPOINT_FORMAT = "pyluz-checkpoint"


# -- checkpoints ---------------------------------------------------------------------------------


class _NotPlain(Exception):
    """Raised inside `_plain` with the path to the offending value, built while unwinding."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind
        self.path = []


# Values `_plain` returns as they are, by exact type (subclasses such as np.float64 take the slow path).
_AS_IS = frozenset({bool, int, float, str, bytes, type(None), torch.dtype, torch.device, torch.Size})


def plain(value, where):
    """A copy of `value` that `torch.load(weights_only=True)` can read: tensors, numbers, strings, None,
    dicts, lists and tuples. numpy values become Python numbers / tensors; anything else is an error
    that names where (`where`, then the keys and indices down to the value).
    """
    try:
        return _plain(value)
    except _NotPlain as e:
        raise TypeError(
            f"{where}{''.join(e.path)} holds a {e.kind}; checkpoints store only tensors, numbers, strings, "
            "None and dicts/lists/tuples of them (so loading them can never run code)."
        ) from None


def _plain(value):
    # Called for every entry of every checkpoint (AutoResume writes them inside epochs): the common
    # exact types first, and the error's path only built when there is one.
    kind = type(value)
    if kind in _AS_IS:
        return value
    if isinstance(value, torch.Tensor):
        return value.detach()
    if kind is dict or isinstance(value, collections.abc.Mapping):
        out = {}
        for k, v in value.items():
            try:
                out[k] = _plain(v)
            except _NotPlain as e:
                e.path.insert(0, f"[{k!r}]")
                raise
        return out
    if isinstance(value, (list, tuple)):
        items = []
        for i, v in enumerate(value):
            try:
                items.append(_plain(v))
            except _NotPlain as e:
                e.path.insert(0, f"[{i}]")
                raise
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, np.generic):  # before the Python types: np.float64 is a float subclass
        return value.item()
    if isinstance(value, (bool, int, float, str, bytes, torch.dtype, torch.device, torch.Size)):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise _NotPlain(type(value).__name__)


def checkpoint_state(ctx):
    """Everything needed to continue a fit from the end of `ctx.epoch` (see the module docstring)."""
    callbacks = []
    for i, cb in enumerate(ctx.callbacks):
        state_fn = getattr(cb, "state_dict", None)
        state = state_fn() if callable(state_fn) else None
        callbacks.append({"name": cb.name, "state": plain(state, f"The state_dict() of callback #{i} ({cb.name})")})
    model_state = unwrap(ctx.model).state_dict()  # keeps its `_metadata` (module versions)
    for key, value in model_state.items():
        if not isinstance(value, torch.Tensor):  # extra state (`get_extra_state`)
            model_state[key] = plain(value, f"The model's state_dict entry {key!r}")
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "epoch": int(ctx.epoch),
        "model": model_state,
        "optimizers": {
            name: plain(opt.state_dict(), f"The state of optimizer {name!r}") for name, opt in ctx.optimizers.items()
        },
        "callbacks": callbacks,
        "records": plain(ctx.records, "`ctx.records`"),
        "rng": get_rng_states(ctx),
        # What the fit was set up with, so AutoResume can tell a re-run with other settings.
        "hparams": settings_entry(getattr(ctx, "hparams", None)),
        "opt_hparams": settings_entry(getattr(ctx, "opt_hparams", None)),
    }


def settings_entry(settings):
    """hparams / opt_hparams as comparable plain data: JSON-like values, `{"$repr": ...}` for the rest."""
    out = {}
    for key, value in dict(settings or {}).items():
        try:
            out[str(key)] = to_json(value, str(key), strict=True)
        except (TypeError, ValueError, RuntimeError):
            out[str(key)] = {"$repr": repr(value)[:1000]}
    return out


def settings_differences(saved, current):
    """['lr: 0.1 in the file, 0.5 now', ...] for the keys whose values differ (`$repr` values can't be compared)."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<unset>"), current.get(key, "<unset>")
        if a == b or has_repr(a) or has_repr(b):
            continue
        diffs.append(f"{key}: {from_json(a)!r} in the file, {from_json(b)!r} now")
    return diffs


def write_checkpoint(ctx, path):
    """Write the full training state of `ctx` to `path`, atomically (temp file + `os.replace`).

    Example:

    >>> import os
    >>> class SaveEvery2(pyluz.Callback):
    ...     def on_epoch_end(self):
    ...         if self.ctx.epoch % 2 == 0:
    ...             pyluz.checkpoints.write_checkpoint(self.ctx, f"ckpt/epoch-{self.ctx.epoch}.pt")
    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> _ = model.fit((x, y), epochs=4, verbose=False, callbacks=[SaveEvery2()])
    >>> sorted(os.listdir("ckpt"))
    ['epoch-2.pt', 'epoch-4.pt']
    """
    state = checkpoint_state(ctx)
    return atomic_write(path, lambda f: torch_save.save(state, f))


def read_checkpoint(path, argument="path"):
    """The checkpoint dict in `path` (tensors on CPU), read weights-only."""
    path = check_existing(path, argument)
    if looks_like_safetensors(path):
        raise ValueError(
            f"`{argument}`: {path!r} is a model file (safetensors), not a checkpoint; use "
            "pyluz.load() or pyluz.load_model_weights()."
        )
    state = torch_load(path, argument)  # also bounds the walk: a list-DAG fails here, not in a later loop
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError(
            f"`{argument}`: {path!r} is not a pyluz checkpoint (a dict with 'model', 'optimizers', "
            "'callbacks', 'records', ...)."
        )
    check_structure(state, path, argument)
    return state


def check_structure(state, path, argument="path"):
    """Raise ValueError unless the parts of a checkpoint dict have the types `checkpoint_state` writes."""

    def bad(what):
        return ValueError(
            f"`{argument}`: {path!r} is not a valid pyluz checkpoint ({what}); the file is damaged or " "crafted."
        )

    epoch = state.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise bad(f"'epoch' is {epoch!r}, not a non-negative int")
    if not isinstance(state.get("optimizers", {}), dict):
        raise bad("'optimizers' is not a dict")
    callbacks = state.get("callbacks", [])
    if not isinstance(callbacks, list) or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str) for c in callbacks
    ):
        raise bad("'callbacks' is not a list of {'name': str, 'state': ...}")
    if not isinstance(state.get("rng", {}) or {}, dict):
        raise bad("'rng' is not a dict")
    if state.get("records") is not None:
        # Records are written as a fresh tree (`plain` copies every container), so sharing means crafting.
        check_records(state["records"], f"`{argument}`: the records in {path!r}")
    for key in ("hparams", "opt_hparams"):
        if not isinstance(state.get(key, {}), dict):
            raise bad(f"{key!r} is not a dict")
    position = state.get("position")  # a checkpoint taken inside an epoch (AutoResume every_n_steps)
    if position is not None:
        ok = isinstance(position, dict) and all(
            isinstance(position.get(k), int) and not isinstance(position.get(k), bool) for k in ("epoch", "consumed")
        )
        ok = ok and position["epoch"] == epoch + 1 and position["consumed"] >= 0
        ok = ok and isinstance(position.get("epoch_rng"), dict) and isinstance(position.get("metrics", []), list)
        if not ok:
            raise bad("'position' is not {'epoch': int, 'consumed': int, 'epoch_rng': dict, 'metrics': list}")


def _restore_optimizers(optimizers, saved, path):
    saved = saved or {}
    if set(saved) == set(optimizers):
        pairs = [(optimizers[name], saved[name]) for name in optimizers]
    elif len(saved) == len(optimizers) == 1:
        pairs = [(next(iter(optimizers.values())), next(iter(saved.values())))]
    else:
        raise ValueError(
            f"The checkpoint {path!r} holds optimizers {list(saved)} but the model has "
            f"{list(optimizers)}; they must match to restore the optimizer state."
        )
    for opt, state in pairs:
        opt.load_state_dict(state)


def _restore_callbacks(callbacks, saved):
    """Give each saved state to the callback with the same name and rank among same-named ones."""
    targets, count = {}, collections.Counter()
    for cb in callbacks:
        targets[(cb.name, count[cb.name])] = cb
        count[cb.name] += 1
    count = collections.Counter()
    for entry in saved or []:
        name, state = entry.get("name"), entry.get("state")
        key = (name, count[name])
        count[name] += 1
        if state is None:
            continue
        cb = targets.get(key)
        if cb is None:
            warnings.warn(
                f"The checkpoint holds a state for callback {name} (#{key[1] + 1} of that name), which this "
                "fit doesn't have; it is ignored.",
                stacklevel=4,
            )
            continue
        load_fn = getattr(cb, "load_state_dict", None)
        if not callable(load_fn):
            raise ValueError(
                f"The checkpoint holds a state for callback {name}, but it defines no "
                "`load_state_dict(state)` method; define one or pass restore_callbacks_state=False."
            )
        load_fn(state)


def apply_checkpoint(
    obj,
    state,
    path,
    restore_model_state=True,
    restore_records=False,
    restore_optimizer_state=False,
    restore_callbacks_state=False,
    restore_rng_state=False,
):
    """Restore the parts of a checkpoint dict selected by the flags into a Context, Fitted or nn.Module."""
    if isinstance(obj, Context):
        ctx = obj
        if restore_model_state:
            load_state(unwrap(ctx.model), state["model"], path)
        if restore_optimizer_state:
            _restore_optimizers(ctx.optimizers, state.get("optimizers"), path)
        if restore_records:
            if ctx.records.get("metrics", {}).get("train"):
                warnings.warn("Restoring records from a checkpoint replaces the records of this fit.", stacklevel=3)
            ctx.set_records(state.get("records") or empty_records())
        if restore_callbacks_state:
            _restore_callbacks(ctx.callbacks, state.get("callbacks"))
        if restore_rng_state and state.get("rng"):
            set_rng_states(state["rng"], ctx)
        return
    model = model_of(obj, "obj")
    for flag, value in (
        ("restore_optimizer_state", restore_optimizer_state),
        ("restore_callbacks_state", restore_callbacks_state),
        ("restore_rng_state", restore_rng_state),
    ):
        if value:
            raise ValueError(
                f"`{flag}=True` needs a training context (`ctx`, e.g. from a callback); a "
                f"{type(obj).__name__} only has a model and records."
            )
    if restore_model_state:
        load_state(model, state["model"], path)
    if restore_records:
        if isinstance(obj, nn.Module):
            raise ValueError("`restore_records=True` needs a pyluz.Fitted or a Context, got an nn.Module.")
        obj.records = state.get("records") or empty_records()


def load_checkpoint(
    obj,
    path,
    restore_model_state=True,
    restore_records=None,
    restore_optimizer_state=None,
    restore_callbacks_state=None,
    restore_rng_state=False,
):
    """Load a checkpoint (ModelCheckpoint / AutoResume / `write_checkpoint` file) into `obj`, in place.

    `obj` is a `pyluz.Fitted` or an nn.Module (model weights; `restore_records` too for a Fitted), or
    a `pyluz.Context` (inside a callback), where the flags select what to restore: model weights,
    records, optimizer states (matched by name) and callback states (matched by name and order; a
    callback with a saved state must define `load_state_dict`). `restore_rng_state` also restores
    the random number generators. Files are read weights-only: a crafted file can't run code.
    Flags left at None take luz's defaults: everything but the RNG state for a `Context`, the
    weights only for a `Fitted` or a module.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> cb = pyluz.callbacks.ModelCheckpoint("checkpoints/", monitor="train_loss")
    >>> fitted = model.fit((x, y), epochs=3, verbose=False, callbacks=[cb])
    >>> pyluz.load_checkpoint(fitted, cb.saved[0], restore_records=True)   # back to the end of epoch 1
    >>> len(fitted.records["metrics"]["train"])
    1
    """
    if not isinstance(obj, (Context, nn.Module)) and not isinstance(getattr(obj, "model", None), nn.Module):
        raise TypeError(message("obj", "a pyluz.Fitted, a pyluz.Context or an nn.Module", type(obj).__name__))
    in_loop = isinstance(obj, Context)
    flags = dict(
        restore_model_state=restore_model_state,
        restore_records=restore_records,
        restore_optimizer_state=restore_optimizer_state,
        restore_callbacks_state=restore_callbacks_state,
        restore_rng_state=restore_rng_state,
    )
    flags = {name: (in_loop if value is None else value) for name, value in flags.items()}
    for name, value in flags.items():
        check_bool(value, name)
    state = read_checkpoint(path)
    apply_checkpoint(obj, state, path, **flags)
    return None
