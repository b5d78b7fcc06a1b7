"""The model file format: a fitted model or its weights as one safetensors file with JSON metadata.

This module writes and reads the files; `pyluz.serialization` is the façade users call
(`Fitted.save`, `pyluz.load`, `save_model_weights`, `load_model_weights`). Files are read with the
safe readers of `pyluz.files`, so a crafted file cannot run code; the one exception is explicit:
`pyluz.load(path, trust_program=True)` runs the program saved with a model defined in R (see below
and `pyluz.export`), which torch can't load safely.

File formats
------------
**Fitted model** (`Fitted.save(path)` / `write_fitted`, read by `read_fitted` / `pyluz.load`): one safetensors file.
The tensors are the model's `state_dict()` (on CPU, contiguous; tensors sharing memory, e.g. tied
weights, are stored once each), and for a model defined in R its program: the bytes of a
`torch.export` / `torch.jit` archive as a 1-d uint8 tensor named `.pyluz.program` (no state-dict
key starts with a dot). The safetensors header metadata (a string -> string map) holds
`"format": "pt"` and `"pyluz"`: a JSON document::

    {"format": "pyluz-fitted", "format_version": 1,
     "module": "package.module:QualName" | null,   # how to rebuild the nn.Module
     "module_kind": "class" | "factory" | "instance",
     "hparams": {...}, "opt_hparams": {...}, "opt_names": ["opt"],
     "records": {"metrics": {"train": [{"loss": 0.5}], "valid": [...]}, "profile": {...}, ...},
     "pyluz_version": "0.1.0", "torch_version": "2.13.0",
     # only for modules defined in R (nn_module()), which Python can't rebuild without R:
     "defined_in": "R", "class_name": "Net",
     "program": {"key": ".pyluz.program", "format": "torch.export" | "torch.jit",
                 "batch": "dynamic" | 1, "bytes": 11825, "sha256": "...", "torch_version": "2.13.0"} | null,
     # only when no program could be made: why, and the end of what torch printed meanwhile
     "program_error": "torch.export: ...; torch.jit: ...", "program_output": "..."}

The program (made by `pyluz.export.program_entry`, silently) runs the model's forward pass without
R; `load(path, trust_program=True)` checks its size and sha256 and returns a `Fitted` whose
`.model` is a `pyluz.export.ProgramModule`. The weights loaders ignore it. Files of an older
layout, with the program in a second file (`"program": {"file": ...}`), still load with `module=`
(from R: `luz_load()`); their program is refused, with a message saying so.

JSON values are plain JSON, with three tagged objects for what JSON lacks: `{"$float": "nan"|"inf"|
"-inf"}` (non-finite numbers), `{"$tuple": [...]}` (tuples, e.g. `kernel_size=(3, 3)`) and
`{"$repr": "..."}` (an hparam that could not be stored; loading then needs `module=` an instance).
Any language with a safetensors reader and a JSON parser reads and writes the same file, so models
move between the R front end and Python.

**Weights only** (`save_model_weights`): the same safetensors layout with `"pyluz"` =
`{"format": "pyluz-weights", "format_version": 1}`. `load_model_weights` also accepts a fitted
model file, a checkpoint (its model part) or a `torch.save`d state dict (read weights-only).

**Checkpoints** are described in `pyluz.checkpoints`.
"""

import collections.abc
import inspect
import json
import math
import numbers
import sys
import warnings

import numpy as np
import torch
from torch import nn

from .checks import fail, message
from .distributed import unwrap
from .export import PROGRAM_KEY, ExportError, ProgramModule, check_entry, is_r_backed, load_program, program_entry
from .files import (
    UnsafeFileError,
    atomic_write,
    check_existing,
    check_output_path,
    looks_like_safetensors,
    read_safetensors,
    read_safetensors_metadata,
    torch_load,
)
from ._version import __version__
from .records import check_records, empty_records

FITTED_FORMAT = "pyluz-fitted"
WEIGHTS_FORMAT = "pyluz-weights"
FORMAT_VERSION = 1


def model_of(obj, argument="obj"):
    """The nn.Module of `obj`: an nn.Module itself or a fitted model's `.model`, DDP wrappers removed."""
    model = obj if isinstance(obj, nn.Module) else getattr(obj, "model", None)
    if not isinstance(model, nn.Module):
        raise TypeError(message(argument, "a pyluz.Fitted or a torch.nn.Module", type(obj).__name__))
    return unwrap(model)


# -- JSON metadata ------------------------------------------------------------------------------


def to_json(value, where, strict=False):
    """A JSON-ready copy of `value` (see the module docstring for the tags).

    Unsupported values raise TypeError when `strict`, else become `{"$repr": repr(value)}` with a
    warning.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.generic,)) and np.ndim(value) == 0:
        value = value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dim() == 0:
        value = value.item()
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return {"$tuple": [to_json(v, f"{where}[{i}]", strict) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [to_json(v, f"{where}[{i}]", strict) for i, v in enumerate(value)]
    if isinstance(value, collections.abc.Mapping) and all(isinstance(k, (str, int)) for k in value):
        return {str(k): to_json(v, f"{where}[{k!r}]", strict) for k, v in value.items()}
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return to_json(value.tolist(), where, strict)
    if strict:
        raise TypeError(f"{where} holds a {type(value).__name__}, which can't be stored as JSON.")
    warnings.warn(
        f"{where} holds a {type(value).__name__}, which can't be stored as JSON; saving its repr " "instead.",
        stacklevel=4,
    )
    return {"$repr": repr(value)}


def from_json(value):
    """Undo `to_json`'s tags (`$repr` values stay tagged dicts, see `_has_repr`)."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "$float" and inner in ("nan", "inf", "-inf"):
                return float(inner)
            if key == "$tuple" and isinstance(inner, list):
                return tuple(from_json(v) for v in inner)
        return {k: from_json(v) for k, v in value.items()}
    return value


def has_repr(value):
    if isinstance(value, dict):
        return (len(value) == 1 and "$repr" in value) or any(has_repr(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_repr(v) for v in value)
    return False


# -- weights as safetensors ---------------------------------------------------------------------


def state_tensors(model):
    """The model's state dict on CPU, contiguous, with no two tensors sharing memory."""
    tensors = {}
    seen = set()
    for key, t in model.state_dict().items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"The model's state_dict entry {key!r} is a {type(t).__name__}; only tensors can be " "saved."
            )
        t = t.detach().to("cpu").contiguous()
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen:  # tied weights / views of one buffer: safetensors wants separate storage
                t = t.clone()
            else:
                seen.add(ptr)
        tensors[key] = t
    return tensors


def write_safetensors(path, tensors, meta):
    from safetensors.torch import save

    metadata = {"format": "pt", "pyluz": json.dumps(meta, allow_nan=False)}
    data = save(tensors, metadata=metadata)
    return atomic_write(path, lambda f: f.write(data))


def read_state_file(path, argument="path"):
    """A model state dict from a weights file, a fitted model file, a checkpoint or a saved state dict."""
    path = check_existing(path, argument)
    if looks_like_safetensors(path):
        tensors, _ = read_safetensors(path, argument)
        tensors.pop(PROGRAM_KEY, None)  # the program of an R-defined model is not a weight
        return tensors
    obj = torch_load(path, argument)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, collections.abc.Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"`{argument}`: {path!r} holds no model state dict (a dict of tensors), got " f"{type(obj).__name__}."
        )
    return dict(obj)


def load_state(model, state, path):
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise RuntimeError(f"The weights in {path!r} don't fit this model ({type(model).__name__}): {e}") from e


# -- fitted models --------------------------------------------------------------------------------


def _import_path(obj):
    target = obj if isinstance(obj, type) or not isinstance(obj, nn.Module) else type(obj)
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    if not module or not qualname:
        return None
    return f"{module}:{qualname}"


def _module_kind(module):
    if isinstance(module, nn.Module):
        return "instance"
    if isinstance(module, type):
        return "class"
    return "factory"


def write_fitted(
    path,
    model,
    module,
    hparams,
    opt_hparams,
    opt_names,
    records,
    example_input=None,
    front_end=None,
    verbose=False,
):
    """Write a fitted model file (format above), with the program of a model defined in R; returns `path`.

    `model` is the trained nn.Module, `module` what `setup()` got (class, factory or instance; it
    names the import path), `example_input` a small model input for exporting an R-defined model.
    `front_end`: a dict of strings a front end stores with the model and reads back itself with
    `read_metadata(path)["front_end"]` (the R package keeps an R-defined model's definition
    there); the engine never interprets it. Exporting prints nothing; why a program could not be
    made is recorded as `"program_error"` and printed only when `verbose`.
    """
    path = check_output_path(path)
    model = unwrap(model)
    if isinstance(model, ProgramModule):
        raise TypeError(
            "This model was loaded from a program (trust_program=True) and can't be saved again; keep the "
            "original model file instead."
        )
    meta = {
        "format": FITTED_FORMAT,
        "format_version": FORMAT_VERSION,
        "module": _import_path(module),
        "module_kind": _module_kind(module),
        "hparams": to_json(dict(hparams), "`hparams`"),
        "opt_hparams": to_json(dict(opt_hparams), "`opt_hparams`"),
        "opt_names": [str(n) for n in opt_names],
        "records": to_json(records, "`records`"),
        "pyluz_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
    }
    if front_end is not None:
        if not (
            isinstance(front_end, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in front_end.items())
        ):
            fail("front_end", "None or a dict of strings", front_end, error=TypeError)
        meta["front_end"] = dict(front_end)
    tensors = state_tensors(model)
    if is_r_backed(model):
        meta["defined_in"] = "R"
        meta["class_name"] = type(model).__name__
        try:
            tensors[PROGRAM_KEY], meta["program"] = program_entry(model, example_input)
        except ExportError as e:
            meta["program"], meta["program_error"] = None, str(e)
            output = getattr(e, "output", "").strip()
            if output:  # what torch printed, for `verbose` (the end of it: the error is there)
                meta["program_output"] = output[-MAX_PROGRAM_OUTPUT:]
    write_safetensors(path, tensors, meta)
    if verbose and "defined_in" in meta:
        print(program_report(meta, path))
    return path


MAX_PROGRAM_OUTPUT = 20_000  # characters of torch's output kept in the metadata of a failed export


def program_report(meta, path):
    """What `verbose` saving says: whether the file at `path` holds a program, and why not (its metadata)."""
    program = meta.get("program")
    if program:
        rows = "any batch size" if program.get("batch") == "dynamic" else "one row at a time"
        return f"Saved {str(path)!r} with a {program.get('format')} program of the forward pass ({rows})."
    text = (
        f"Saved {str(path)!r} without a program: the forward pass of the R-defined model "
        f"{meta.get('class_name')} could not be exported ({meta.get('program_error')}). Python without R can "
        "load this file only with `module=`."
    )
    output = meta.get("program_output")
    return text + (f"\nWhat torch printed while exporting:\n{output}" if output else "")


def write_weights(path, model):
    """Write only the state dict of `model` (the weights format above); returns `path`."""
    path = check_output_path(path)
    return write_safetensors(path, state_tensors(model), {"format": WEIGHTS_FORMAT, "format_version": FORMAT_VERSION})


def read_metadata(path):
    """The JSON metadata of a file written by `save_fitted` / `save_model_weights` (tags undone)."""
    path = check_existing(path)
    if not looks_like_safetensors(path):
        raise ValueError(f"`path`: {path!r} is not a pyluz model file (a safetensors file).")
    info = read_safetensors_metadata(path)
    return from_json(info) if info is not None else {}


class NotImportedError(ImportError):
    """The module a file names is not imported in this process (pyluz never imports it on its own)."""


def _resolve_import_path(spec, path):
    """The object `package.module:Qual.Name` names, found only among modules already imported.

    Importing a module named by a file runs that module's code (`antigravity` opens a browser,
    `unittest.__main__` exits, `tqdm.__main__` reads stdin), so a module that is not in
    `sys.modules` is an error asking for `module=`. Attributes are looked up statically
    (`inspect.getattr_static`), so neither a module `__getattr__` (lazy imports) nor a descriptor runs.
    """
    if not isinstance(spec, str):
        raise LookupError(f"{spec!r} is not an import path")
    modname, _, qualname = spec.partition(":")
    if not modname or not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        raise LookupError(f"{spec!r} is not importable (defined inside a function)")
    obj = sys.modules.get(modname)
    if obj is None:
        raise NotImportedError(
            f"the module {modname!r} is not imported in this process, and pyluz never imports a "
            f"module named by a file (importing runs its code); `import {modname}` first if you "
            "trust it"
        )
    for part in qualname.split("."):
        try:
            obj = inspect.getattr_static(obj, part)
        except AttributeError:
            raise LookupError(f"{modname!r} has no attribute {qualname!r}") from None
    return obj


def build_checked(factory, hparams, shapes, spec, path, how):
    """`factory(**hparams)`, built for real only after a build on the `meta` device matched the file's shapes.

    A file can name any imported nn.Module class with any hparams (a 30000x30000 `torch.nn:Linear`
    would allocate 3.4 GB before the weights fail to fit); on `meta` nothing is allocated. The
    constructor is still code the file chose to run, so every exception, `SystemExit` included, becomes a
    RuntimeError here (Ctrl-C still propagates).
    """
    name = getattr(factory, "__name__", type(factory).__name__)

    def build(device):
        try:
            with torch.device(device):
                return factory(**hparams)
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            raise RuntimeError(
                f"Building the module {name}(**hparams) with the saved hparams {sorted(hparams)} failed "
                f"({type(e).__name__}: {e}); {how}."
            ) from e

    try:
        skeleton = build("meta")
    except RuntimeError:
        skeleton = None  # a constructor that computes on its tensors can't run on meta; checked after the build
    if skeleton is not None:
        _check_shapes(skeleton, shapes, spec, path, how)
        del skeleton
    model = build("cpu")
    check_built(model)
    return model


def check_built(model, argument="module"):
    """`model` if `argument` (a class or factory) built an nn.Module, else TypeError."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"`{argument}` must build a torch.nn.Module, but calling it returned {type(model).__name__}.")
    return model


def _check_shapes(model, shapes, spec, path, how):
    check_built(model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    if expected == shapes:
        return
    missing = sorted(set(expected) - set(shapes))[:5]
    unexpected = sorted(set(shapes) - set(expected))[:5]
    wrong = [
        f"{k}: model {expected[k]}, file {shapes[k]}"
        for k in sorted(set(expected) & set(shapes))
        if expected[k] != shapes[k]
    ][:5]
    detail = "; ".join(
        part
        for part in (
            f"missing in the file: {missing}" if missing else "",
            f"not in the model: {unexpected}" if unexpected else "",
            f"different shapes: {wrong}" if wrong else "",
        )
        if part
    )
    where = ""
    if isinstance(spec, str) and spec.startswith("__main__:"):
        where = (
            f" The file was saved from a script's `__main__`; the class {spec.partition(':')[2]!r} of this "
            "script's `__main__` is not the one it was saved from."
        )
    raise ValueError(
        f"The module {spec!r} built with the hparams saved in {path!r} does not match the file's weights "
        f"({detail}).{where} Nothing was built for real; {how}."
    )


def build_module(info, module, path, shapes=None):
    """`(model, source)` for a fitted model file's metadata `info`: `module=` when given, else the saved class.

    `shapes` (`{name: shape}` of the file's tensors) is given when the class comes from the file:
    it is then built on `meta` first and compared (`build_checked`).
    """
    hparams = from_json(info.get("hparams") or {})
    if not isinstance(hparams, dict):
        raise ValueError(f"The hparams saved in {path!r} are not a dict; the file is damaged or crafted.")
    spec = info.get("module")
    kind = info.get("module_kind", "class")
    how = f"pass it explicitly: pyluz.load({path!r}, module=<the class or a built instance>)"
    if module is not None:
        if isinstance(module, nn.Module):
            return module, module
        if not callable(module):
            expected = "an nn.Module class, a factory returning one, or an nn.Module instance"
            raise TypeError(message("module", expected, type(module).__name__))
        factory = module
    else:
        if info.get("defined_in") == "R":
            raise ValueError(
                f"{path!r} holds a model defined in R (nn_module {info.get('class_name')!r}), which "
                f"Python can't rebuild without R; {how}."
            )
        if spec is None:
            raise ValueError(f"{path!r} does not say which module class it holds; {how}.")
        try:
            factory = _resolve_import_path(spec, path)
        except NotImportedError as e:
            raise NotImportedError(f"Could not find the module {spec!r} saved in {path!r}: {e}; or {how}.") from e
        except Exception as e:
            raise ImportError(
                f"Could not import the module {spec!r} saved in {path!r} " f"({type(e).__name__}: {e}); {how}."
            ) from e
        if not (isinstance(factory, type) and issubclass(factory, nn.Module)):
            # Calling an arbitrary function named by a file (with arguments from the file) could run
            # anything; only nn.Module classes are built automatically.
            raise ValueError(
                f"{path!r} was saved from the factory {spec!r}, which pyluz does not call on its own "
                f"(only nn.Module classes are); {how}."
            )
        if kind == "instance" and hparams:
            raise ValueError(f"{path!r} was saved from a module instance; {how}.")
    if has_repr(hparams):
        bad = [k for k, v in hparams.items() if has_repr(v)]
        raise ValueError(
            f"The hparams {bad} of {path!r} could not be saved, so the module can't be rebuilt from "
            f"them; pass `module=` an already built instance."
        )
    if shapes is None:  # a factory given by the caller is the caller's code: build it directly
        try:
            model = factory(**hparams)
        except Exception as e:
            name = getattr(factory, "__name__", type(factory).__name__)
            raise RuntimeError(
                f"Building the module {name}(**hparams) with the saved hparams {sorted(hparams)} "
                f"failed ({type(e).__name__}: {e}); {how}."
            ) from e
        check_built(model)
        return model, factory
    return build_checked(factory, hparams, shapes, spec, path, how), factory


def read_fitted(path, module=None, trust_program=False):
    """Read a fitted model file: `(model, source, info)`, the model built with its weights loaded.

    `source` is what a `LuzModule` should hold as its module (the class, factory or instance, or
    the `ProgramModule`), `info` the JSON metadata with its tags undone. `module=` overrides the
    saved import path; `trust_program=True` allows running the saved program of an R model.
    """
    path = check_existing(path)
    if not looks_like_safetensors(path):
        raise UnsafeFileError(
            f"`path`: {path!r} is not a pyluz model file (a safetensors file written by "
            "Fitted.save()). pyluz does not read pickled models, which could run code; checkpoints "
            "load with pyluz.load_checkpoint()."
        )
    tensors, info = read_safetensors(path)
    program_bytes = tensors.pop(PROGRAM_KEY, None)
    if not info or info.get("format") != FITTED_FORMAT:
        raise ValueError(
            f"`path`: {path!r} is not a fitted model file written by pyluz (weights-only files load with "
            "pyluz.load_model_weights(model, path))."
        )
    if int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"`path`: {path!r} uses format version {info['format_version']}, newer than this pyluz "
            f"understands ({FORMAT_VERSION}); update pyluz."
        )
    program = info.get("program") if module is None else None
    if program is not None:
        check_entry(program, path)
    records = check_records(from_json(info.get("records") or empty_records()), f"The records saved in {path!r}")
    opt_names = info.get("opt_names") or ["opt"]
    if not (isinstance(opt_names, list) and all(isinstance(n, str) for n in opt_names)):
        raise ValueError(
            f"The optimizer names saved in {path!r} are not a list of strings; the file is damaged or " "crafted."
        )
    shapes = {k: tuple(t.shape) for k, t in tensors.items()} if module is None else None
    try:
        model, source = build_module(info, module, path, shapes)
    except (ImportError, ValueError, RuntimeError) as e:
        # `reason` tells front ends which of their own arguments to suggest, without parsing text
        if not program:
            e.reason = "module_needed"
            raise
        if not trust_program:
            error = type(e)(
                f"{e}\nThe file holds a program ({program.get('format')}) "
                "that runs the forward pass without the module class: pyluz.load(path, "
                "trust_program=True). Loading a program can run code stored in it (torch.export.load "
                "unpickles parts of it), so do this only for files you trust."
            )
            error.reason = "module_or_trust_needed"
            raise error from e
        model = source = load_program(program, program_bytes, path, name=info.get("class_name"))
    else:
        load_state(model, tensors, path)
    return (
        model,
        source,
        {
            **info,
            "hparams": from_json(info.get("hparams") or {}),
            "opt_hparams": from_json(info.get("opt_hparams") or {}),
            "records": records,
            "opt_names": opt_names,
        },
    )


__all__ = [
    "FITTED_FORMAT",
    "WEIGHTS_FORMAT",
    "FORMAT_VERSION",
    "model_of",
    "to_json",
    "from_json",
    "has_repr",
    "state_tensors",
    "write_safetensors",
    "read_state_file",
    "load_state",
    "write_fitted",
    "program_report",
    "write_weights",
    "read_metadata",
    "NotImportedError",
    "build_checked",
    "build_module",
    "read_fitted",
]
