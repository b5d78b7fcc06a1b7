"""Saving and loading fitted models and their weights: the functions users call.

`Fitted.save()` / `save_fitted`, `load`, `save_model_weights` and `load_model_weights` check their
arguments and turn a `Fitted` into what the model file holds and back. The file format itself
lives in `pyluz.model_file`, the safe readers in `pyluz.files`, training checkpoints in
`pyluz.checkpoints` and the programs of R-defined models in `pyluz.export`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch import nn

from .checks import check_bool, check_type
from .files import UnsafeFileError
from .model_file import model_of, read_fitted, read_metadata, read_state_file, load_state, write_weights
from .module import LuzModule, check_training_args
from .results import Fitted


def save_fitted(
    fitted: Fitted, path: str | os.PathLike, front_end: dict[str, str] | None = None, verbose: bool = False
) -> str:
    """Save a fitted model to `path` (one safetensors file: weights + JSON metadata); read it with `pyluz.load`.

    Same as `fitted.save(path, verbose=verbose)`; returns `path`. `front_end`: a dict of strings a front end stores
    with the model and reads back itself with `read_metadata(path)["front_end"]` (the R package
    keeps an R-defined model's definition there); the engine never interprets it.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> fitted = pyluz.setup(nn.Linear(4, 2), loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).fit(
    ...     (x, y), epochs=1, verbose=False)
    >>> pyluz.serialization.save_fitted(fitted, "model.safetensors")
    'model.safetensors'
    >>> again = pyluz.load("model.safetensors", module=nn.Linear(4, 2))
    """
    check_type(fitted, "fitted", Fitted, "a pyluz.Fitted (what fit() returns)")
    return fitted.save(path, front_end=front_end, verbose=verbose)


def load(
    path: str | os.PathLike,
    module: Any = None,
    loss: Callable | None = None,
    optimizer: Callable | None = None,
    metrics: Any = None,
    trust_program: bool = False,
) -> Fitted:
    """Load a model saved with `Fitted.save()` / `save_fitted()`; returns a `pyluz.Fitted`.

    The module is rebuilt from its saved import path (`package.module:Class`) with the saved
    hparams, then the weights are loaded (on CPU; move it with `fitted.model.to(device)`). Pass
    `module=` the class (or a factory) when it can't be imported (defined in a script or a
    notebook), or an already built instance to load the weights into. `loss`, `optimizer` and
    `metrics` (as in `setup()`) are not stored in the file; pass them to use `evaluate()`. Loading
    never unpickles objects: a crafted file can't run code.

    A model defined in R (`nn_module()`) can't be rebuilt without R, and Python never runs the R
    definition an R front end stores in the file. The file holds a program (see `pyluz.export`)
    that runs the forward pass: `trust_program=True` loads it (after checking its size and sha256
    against the file's metadata), giving a `Fitted` whose `.model` is a
    `pyluz.export.ProgramModule` (forward pass only, for `predict()`; `evaluate()` needs `loss=`).
    torch can run code stored in a program file while loading it, so pass `trust_program=True`
    only for files you trust. `module=` wins when given.

    What a file can and can't make happen: `trust_program=True` is the only option that runs code
    stored in a file. Without it, the file can only name a class: pyluz looks it up among the modules
    already imported (it never imports a module a file names; import it yourself, or pass
    `module=`), accepts only `nn.Module` subclasses, builds it first on the `meta` device and
    compares its state-dict shapes with the file's tensors before building it for real, and turns
    anything the constructor raises (`SystemExit` too) into an error. Metadata is size-capped and
    only regular files are opened (never a FIFO or a device).

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> fitted = model.fit((x, y), epochs=1, verbose=False)
    >>> fitted.save("model.safetensors")
    'model.safetensors'
    >>> again = pyluz.load("model.safetensors")                  # nn.Linear is importable: rebuilt with its hparams
    >>> torch.equal(again.predict(x, verbose=False), fitted.predict(x, verbose=False))
    True
    >>> again = pyluz.load("model.safetensors", module=nn.Linear)  # a class defined in a script: pass it

    A model saved from R with `nn_module()` loads with `pyluz.load(path, trust_program=True)`.
    """
    check_training_args(loss, optimizer, metrics)
    check_bool(trust_program, "trust_program")
    model, source, info = read_fitted(path, module=module, trust_program=trust_program)
    luz_module = LuzModule(
        source,
        loss=loss,
        optimizer=optimizer,
        metrics=metrics,
        hparams=info["hparams"],
        opt_hparams=info["opt_hparams"],
    )
    return Fitted(model=model, records=info["records"], luz_module=luz_module, opt_names=info["opt_names"])


def save_model_weights(obj: Fitted | nn.Module, path: str | os.PathLike) -> str:
    """Save only the model's weights (its state dict) of a Fitted or an nn.Module, as safetensors.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> fitted, other = model.fit((x, y), epochs=1, verbose=False), model.fit((x, y), epochs=1, verbose=False)
    >>> pyluz.save_model_weights(fitted, "weights.safetensors")
    'weights.safetensors'
    >>> pyluz.load_model_weights(other, "weights.safetensors")   # in place
    >>> torch.equal(other.model.weight, fitted.model.weight)
    True
    """
    return write_weights(path, model_of(obj))


def load_model_weights(obj: Fitted | nn.Module, path: str | os.PathLike) -> None:
    """Load weights into the model of a Fitted (or an nn.Module) in place; returns None.

    `path` may be a weights file, a fitted model file, a checkpoint (its model part) or a
    `torch.save`d state dict; only tensors are read, never pickled objects.

    Example:

    >>> net = nn.Linear(4, 2)
    >>> _ = pyluz.save_model_weights(net, "weights.safetensors")
    >>> pyluz.load_model_weights(nn.Linear(4, 2), "weights.safetensors")
    """
    model = model_of(obj)
    load_state(model, read_state_file(path), path)


__all__ = ["UnsafeFileError", "save_fitted", "load", "read_metadata", "save_model_weights", "load_model_weights"]
