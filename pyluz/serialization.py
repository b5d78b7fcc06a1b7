"""Saving and loading fitted models and weights, and reading files safely (SPEC §3.9, §7).

Nothing here unpickles arbitrary objects: model files are safetensors (a JSON header plus raw
tensor bytes) and checkpoints are read with `torch.load(weights_only=True)`, which only rebuilds
tensors, numbers, strings and plain containers. A crafted file cannot run code; it fails with a
clear error instead. The one exception is explicit: `load(path, trust_program=True)` runs the program
saved with a model defined in R (see below and `pyluz.export`), which torch can't load safely.

File formats
------------
**Fitted model** (`Fitted.save(path)` / `save_fitted`, read by `pyluz.load`): one safetensors file.
The tensors are the model's `state_dict()` (on CPU, contiguous; tensors sharing memory, e.g. tied
weights, are stored once each). The safetensors header metadata (a string -> string map) holds
`"format": "pt"` and `"pyluz"`: a JSON document::

    {"format": "pyluz-fitted", "format_version": 1,
     "module": "package.module:QualName" | null,   # how to rebuild the nn.Module
     "module_kind": "class" | "factory" | "instance",
     "hparams": {...}, "opt_hparams": {...}, "opt_names": ["opt"],
     "records": {"metrics": {"train": [{"loss": 0.5}], "valid": [...]}, "profile": {...}, ...},
     "pyluz_version": "0.1.0", "torch_version": "2.13.0",
     # only for modules defined in R (nn_module()), which Python can't rebuild without R:
     "defined_in": "R", "class_name": "Net",
     "program": {"file": "<name>.pt2", "format": "torch.export" | "torch.jit", "batch": "dynamic" | 1,
                 "sha256": "...", "torch_version": "2.13.0"} | null}

The program (written by `pyluz.export.save_program` next to the model file) runs the model's forward
pass without R; `load(path, trust_program=True)` checks its sha256 and returns a `Fitted` whose
`.model` is a `pyluz.export.ProgramModule`.

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
import hashlib
import inspect
import json
import math
import numbers
import os
import pickle
import re
import socket
import stat
import sys
import uuid
import warnings

import numpy as np
import torch
from torch import nn
from .distributed import unwrap
from .export import ExportError, ProgramModule, check_entry, is_r_backed, load_program, save_program

FITTED_FORMAT = "pyluz-fitted"
WEIGHTS_FORMAT = "pyluz-weights"
FORMAT_VERSION = 1


class UnsafeFileError(ValueError):
    """A file that pyluz refuses to read because it holds more than tensors and plain data."""


# -- small helpers ------------------------------------------------------------------------------

def check_path(path, argument="path"):
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{argument}` must be a file path (str or os.PathLike), got {type(path).__name__}.")
    path = os.path.expanduser(os.fspath(path))
    if not path:
        raise ValueError(f"`{argument}` must be a non-empty file path.")
    return path


def check_output_path(path, argument="path"):
    """A path to write a file to: not an existing directory."""
    path = check_path(path, argument)
    if os.path.isdir(path):
        raise ValueError(f"`{argument}` {path!r} is a directory; give a file name such as "
                         f"{os.path.join(path, 'model.safetensors')!r}.")
    return path


def _check_existing(path, argument="path"):
    path = check_path(path, argument)
    if not os.path.exists(path):
        raise FileNotFoundError(f"`{argument}`: no file at {path!r}.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"`{argument}` must be a file, got the directory {path!r}.")
    _check_regular(os.stat(path).st_mode, path, argument)
    return path


def _check_regular(mode, path, argument):
    # A FIFO, socket or device would block (or never end) on read: only regular files are read.
    if not stat.S_ISREG(mode):
        raise ValueError(f"`{argument}`: {path!r} is not a regular file (a FIFO, socket or device?); pyluz reads "
                         "models and checkpoints only from regular files.")


def open_regular(path, argument="path"):
    """Open `path` for binary reading, refusing anything but a regular file without blocking on it.

    `O_NONBLOCK` keeps `open()` from waiting for a writer when `path` was swapped for a FIFO after
    `_check_existing` looked at it; the check itself is then done on the opened descriptor.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_regular(os.fstat(fd).st_mode, path, argument)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")



def _model_of(obj, argument="obj"):
    from .results import Fitted

    if isinstance(obj, Fitted):
        return unwrap(obj.model)
    if isinstance(obj, nn.Module):
        return unwrap(obj)
    raise TypeError(f"`{argument}` must be a pyluz.Fitted or a torch.nn.Module, got {type(obj).__name__}.")


# Temp files are `.<target name>.<pid>@<host tag>.<8 hex>.tmp`: the pid and host say whose they are, so
# a later write removes those of dead processes on this host and never a live writer's.
_HOST_TAG = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)(?:@(?P<host>[0-9a-f]{8}))?\.[0-9a-f]{8}\.tmp$")
_IN_FLIGHT = set()  # temp paths this process is writing right now


def atomic_write(path, write):
    """Call `write(fileobj)` on a temp file next to `path`, fsync it, then `os.replace` it onto `path`.

    A crash at any moment leaves `path` either as it was or fully written; the temp file is removed
    when `write` fails, and one left by a killed process (SIGKILL, power loss) is removed by the next
    write into the same directory.
    """
    path = check_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temp_files(directory)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}@{_HOST_TAG}.{uuid.uuid4().hex[:8]}.tmp")
    _IN_FLIGHT.add(tmp)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        _IN_FLIGHT.discard(tmp)
    _fsync_dir(directory)
    return path


def _process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # someone else's process, or we can't tell: keep its file
    return True


def _is_stale_temp(directory, name, target=None):
    m = _TEMP_NAME.match(name)
    if m is None or (target is not None and m["target"] != target):
        return False
    if m["host"] is not None and m["host"] != _HOST_TAG:
        return False  # written from another machine (a shared disk): its pid means nothing here
    pid = int(m["pid"])
    if pid == os.getpid():
        return os.path.join(directory, name) not in _IN_FLIGHT  # ours, from a write that never finished
    return not _process_alive(pid)


def remove_stale_temp_files(directory, target=None):
    """Delete temp files `atomic_write` left in `directory` (for `target` only, when given) whose writer is dead."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if _is_stale_temp(directory, name, target):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def remove_temp_files(path):
    """Delete temp files that `atomic_write(path, ...)` left behind when a process died mid-write.

    Only files of dead processes (on this host) are removed: a live writer's temp file is its own.
    """
    path = check_path(path)
    remove_stale_temp_files(os.path.dirname(os.path.abspath(path)), os.path.basename(path))


def _fsync_dir(directory):
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    warnings.warn(f"{where} holds a {type(value).__name__}, which can't be stored as JSON; saving its repr "
                  "instead.", stacklevel=4)
    return {"$repr": repr(value)}


def from_json(value):
    """Undo `to_json`'s tags (`$repr` values stay tagged dicts, see `_has_repr`)."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (key, inner), = value.items()
            if key == "$float" and inner in ("nan", "inf", "-inf"):
                return float(inner)
            if key == "$tuple" and isinstance(inner, list):
                return tuple(from_json(v) for v in inner)
        return {k: from_json(v) for k, v in value.items()}
    return value


def _has_repr(value):
    if isinstance(value, dict):
        return (len(value) == 1 and "$repr" in value) or any(_has_repr(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_repr(v) for v in value)
    return False


# -- weights as safetensors ---------------------------------------------------------------------

def _state_tensors(model):
    """The model's state dict on CPU, contiguous, with no two tensors sharing memory."""
    tensors = {}
    seen = set()
    for key, t in model.state_dict().items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"The model's state_dict entry {key!r} is a {type(t).__name__}; only tensors can be "
                            "saved.")
        t = t.detach().to("cpu").contiguous()
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen:  # tied weights / views of one buffer: safetensors wants separate storage
                t = t.clone()
            else:
                seen.add(ptr)
        tensors[key] = t
    return tensors


def _write_safetensors(path, tensors, meta):
    from safetensors.torch import save

    metadata = {"format": "pt", "pyluz": json.dumps(meta, allow_nan=False)}
    data = save(tensors, metadata=metadata)
    return atomic_write(path, lambda f: f.write(data))


def _looks_like_safetensors(path):
    with open_regular(path) as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < n <= os.path.getsize(path) - 8


# Caps on what a file can make pyluz parse: json.loads of N bytes of tiny objects peaks near 20 N of
# memory, so 8 MiB of metadata (records of tens of thousands of epochs) stays under ~200 MB.
MAX_HEADER_BYTES = 64 * 2**20    # the safetensors JSON header (tensor names, shapes, metadata)
MAX_METADATA_BYTES = 8 * 2**20   # the "pyluz" JSON document in it
MAX_NODES = 2_000_000            # containers + leaves in records / checkpoint data, counted along every path


def _check_header_size(path, argument="path"):
    with open_regular(path, argument) as f:
        n = int.from_bytes(f.read(8), "little")
    if n > MAX_HEADER_BYTES:
        raise ValueError(f"`{argument}`: the safetensors header of {path!r} is {n} bytes, more than pyluz reads "
                         f"({MAX_HEADER_BYTES}); the file is damaged or crafted.")


def _parse_metadata(meta, path, argument="path"):
    """The pyluz JSON document of a safetensors metadata map (size-capped), or None."""
    text = meta.get("pyluz")
    if text is None:
        return None
    if len(text) > MAX_METADATA_BYTES:
        raise ValueError(f"`{argument}`: the pyluz metadata of {path!r} is {len(text)} characters, more than pyluz "
                         f"reads ({MAX_METADATA_BYTES}); the file is damaged or crafted.")
    try:
        info = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError; deep nesting recurses
        raise ValueError(f"`{argument}`: the pyluz metadata of {path!r} is not valid JSON "
                         f"({type(e).__name__}: {str(e)[:200]}).") from e
    if not isinstance(info, dict):
        raise ValueError(f"`{argument}`: the pyluz metadata of {path!r} is not a JSON object.")
    return info


def _read_safetensors(path, argument="path"):
    """(tensors, pyluz metadata dict or None) of a safetensors file, on CPU."""
    from safetensors import safe_open

    _check_header_size(path, argument)
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError and friends: a damaged or foreign file
        raise ValueError(f"`{argument}`: {path!r} is not a readable safetensors file ({e}).") from e
    return tensors, _parse_metadata(meta, path, argument)


def check_plain_tree(value, where, leaves=(bool, int, float, str, type(None)), shared_ok=False, budget=MAX_NODES):
    """Raise ValueError unless `value` is dicts/lists/tuples of `leaves`, at most `budget` nodes.

    Nodes are counted along every path, so data whose containers are shared (a list-DAG such as
    `b = [b, b]` forty times: 234 bytes of pickle, 2**40 paths) fails after `budget` steps instead of
    hanging whatever walks it later. `shared_ok=False` also refuses any container reached twice.
    Iterative, so deep nesting can't overflow the stack.
    """
    seen = set()
    stack = [(value, where)]
    count = 0
    while stack:
        item, at = stack.pop()
        count += 1
        if count > budget:
            raise ValueError(f"{where} holds more than {budget} values (or containers shared many times over); the "
                             "file is damaged or crafted.")
        if isinstance(item, (dict, list, tuple)):
            if not shared_ok:
                if id(item) in seen:
                    raise ValueError(f"{at} is the same container as another part of {where}; pyluz files hold "
                                     "plain trees, so the file is damaged or crafted.")
                seen.add(id(item))
            if isinstance(item, dict):
                for k, v in item.items():
                    if not isinstance(k, (str, int)):
                        raise ValueError(f"{at} has a key of type {type(k).__name__}; only strings and integers "
                                         "are expected.")
                    stack.append((v, f"{at}[{k!r}]"))
            else:
                stack.extend((v, f"{at}[{i}]") for i, v in enumerate(item))
        elif not isinstance(item, leaves):
            raise ValueError(f"{at} is a {type(item).__name__}; only numbers, strings, None and lists/dicts of "
                             "them are expected there.")
    return value


RECORD_LEAVES = (bool, int, float, str, type(None), torch.Tensor)


def check_records(records, where):
    """Records as a file holds them: a dict of plain trees (numbers, strings, tensors), no sharing, within budget."""
    if not isinstance(records, dict):
        raise ValueError(f"{where} must be a dict, got {type(records).__name__}; the file is damaged or crafted.")
    check_plain_tree(records, where, leaves=RECORD_LEAVES)
    metrics = records.get("metrics", {"train": [], "valid": []})
    if not isinstance(metrics, dict) or not all(isinstance(metrics.get(s, []), list) for s in ("train", "valid")):
        raise ValueError(f"{where}['metrics'] must be a dict with 'train' and 'valid' lists; the file is damaged or "
                         "crafted.")
    for split in ("train", "valid"):
        for i, entry in enumerate(metrics.get(split, [])):
            if not isinstance(entry, dict):
                raise ValueError(f"{where}['metrics'][{split!r}][{i}] must be a dict of metric values, got "
                                 f"{type(entry).__name__}; the file is damaged or crafted.")
    return records


def _torch_load(path, argument="path"):
    """`torch.load(weights_only=True)` on CPU; anything that would need unpickling code is refused.

    The result is checked to be a tree of tensors and plain values within `MAX_NODES` (shared
    tuples such as an optimizer's `betas` are fine; a list-DAG that would hang a later walk is not).
    """
    with open_regular(path, argument) as f:
        head = f.read(4)
        if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):  # zip (torch.save) or a pickle
            raise ValueError(f"`{argument}`: {path!r} is neither a safetensors file nor a torch checkpoint.")
        f.seek(0)
        obj = _torch_load_file(f, path, argument)
    leaves = (bool, int, float, complex, str, bytes, type(None), torch.Tensor, torch.dtype, torch.device, torch.Size)
    check_plain_tree(obj, f"`{argument}` ({path!r})", leaves=leaves, shared_ok=True)
    return obj


def _torch_load_file(f, path, argument):
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        boilerplate = ("Weights only load failed", "Check the documentation", "(1)", "(2)", "Please file an issue")
        lines = [ln.strip().split("WeightsUnpickler error:")[-1].strip() for ln in str(e).splitlines()]
        first = next((ln for ln in lines if ln and not ln.startswith(boilerplate)), "not weights-only data")
        raise UnsafeFileError(
            f"`{argument}`: refusing to load {path!r}: it is not a safetensors file or a torch file holding only "
            "tensors, numbers, strings and containers. pyluz never unpickles arbitrary objects (a crafted file "
            f"could run code). Details: {first}") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"`{argument}`: {path!r} is neither a safetensors file nor a torch checkpoint ({e}).") from e


def read_state_file(path, argument="path"):
    """A model state dict from a weights file, a fitted model file, a checkpoint or a saved state dict."""
    path = _check_existing(path, argument)
    if _looks_like_safetensors(path):
        tensors, _ = _read_safetensors(path, argument)
        return tensors
    obj = _torch_load(path, argument)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, collections.abc.Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"`{argument}`: {path!r} holds no model state dict (a dict of tensors), got "
                         f"{type(obj).__name__}.")
    return dict(obj)


def _load_state(model, state, path):
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


def save_fitted(fitted, path):
    """Save a fitted model to `path` (one safetensors file: weights + JSON metadata); read it with `pyluz.load`.

    Example::

        fitted.save("model.safetensors")          # same as pyluz.serialization.save_fitted(fitted, ...)
        again = pyluz.load("model.safetensors")
    """
    from . import __version__
    from .results import Fitted

    if not isinstance(fitted, Fitted):
        raise TypeError(f"`fitted` must be a pyluz.Fitted (what fit() returns), got {type(fitted).__name__}.")
    path = check_output_path(path)
    module = fitted.luz_module.module if fitted.luz_module is not None else fitted.model
    model = unwrap(fitted.model)
    if isinstance(model, ProgramModule):
        raise TypeError("This model was loaded from a program (trust_program=True) and can't be saved again; copy the "
                        "original model file and its program file instead.")
    meta = {
        "format": FITTED_FORMAT,
        "format_version": FORMAT_VERSION,
        "module": _import_path(module),
        "module_kind": _module_kind(module),
        "hparams": to_json(dict(fitted.hparams), "`hparams`"),
        "opt_hparams": to_json(dict(fitted.opt_hparams), "`opt_hparams`"),
        "opt_names": [str(n) for n in fitted.opt_names],
        "records": to_json(fitted.records, "`records`"),
        "pyluz_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
    }
    if is_r_backed(model):
        meta["defined_in"] = "R"
        meta["class_name"] = type(model).__name__
        meta["program"] = _export_program(fitted, model, path)
    _write_safetensors(path, _state_tensors(model), meta)  # after the program: the metadata holds its sha256
    return path


def _export_program(fitted, model, path):
    """Write the program of an R-defined model next to `path` (pyluz.export); its metadata entry, or None."""
    try:
        return save_program(model, getattr(fitted, "example_input", None), path)
    except ExportError as e:
        warnings.warn(f"Saved {path!r} without a program: the forward pass of the R-defined model "
                      f"{type(model).__name__} could not be exported ({e}). Python without R can load this file only "
                      "with `module=`.", stacklevel=3)
        return None


def read_metadata(path):
    """The JSON metadata of a file written by `save_fitted` / `save_model_weights` (tags undone)."""
    path = _check_existing(path)
    if not _looks_like_safetensors(path):
        raise ValueError(f"`path`: {path!r} is not a pyluz model file (a safetensors file).")
    from safetensors import safe_open

    _check_header_size(path)
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise ValueError(f"`path`: {path!r} is not a readable safetensors file ({e}).") from e
    info = _parse_metadata(meta, path)
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
        raise NotImportedError(f"the module {modname!r} is not imported in this process, and pyluz never imports a "
                               f"module named by a file (importing runs its code); `import {modname}` first if you "
                               "trust it")
    for part in qualname.split("."):
        try:
            obj = inspect.getattr_static(obj, part)
        except AttributeError:
            raise LookupError(f"{modname!r} has no attribute {qualname!r}") from None
    return obj


def _build_checked(factory, hparams, shapes, spec, path, how):
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
            raise RuntimeError(f"Building the module {name}(**hparams) with the saved hparams {sorted(hparams)} failed "
                               f"({type(e).__name__}: {e}); {how}.") from e

    try:
        skeleton = build("meta")
    except RuntimeError:
        skeleton = None  # a constructor that computes on its tensors can't run on meta; checked after the build
    if skeleton is not None:
        _check_shapes(skeleton, shapes, spec, path, how)
        del skeleton
    model = build("cpu")
    if not isinstance(model, nn.Module):
        raise TypeError(f"`module` must build a torch.nn.Module, but it returned {type(model).__name__}.")
    return model


def _check_shapes(model, shapes, spec, path, how):
    if not isinstance(model, nn.Module):
        raise TypeError(f"`module` must build a torch.nn.Module, but it returned {type(model).__name__}.")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    if expected == shapes:
        return
    missing = sorted(set(expected) - set(shapes))[:5]
    unexpected = sorted(set(shapes) - set(expected))[:5]
    wrong = [f"{k}: model {expected[k]}, file {shapes[k]}" for k in sorted(set(expected) & set(shapes))
             if expected[k] != shapes[k]][:5]
    detail = "; ".join(part for part in (
        f"missing in the file: {missing}" if missing else "",
        f"not in the model: {unexpected}" if unexpected else "",
        f"different shapes: {wrong}" if wrong else "") if part)
    where = ""
    if isinstance(spec, str) and spec.startswith("__main__:"):
        where = (f" The file was saved from a script's `__main__`; the class {spec.partition(':')[2]!r} of this "
                 "script's `__main__` is not the one it was saved from.")
    raise ValueError(f"The module {spec!r} built with the hparams saved in {path!r} does not match the file's weights "
                     f"({detail}).{where} Nothing was built for real; {how}.")


def _build_module(info, module, path, shapes=None):
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
            raise TypeError(f"`module` must be an nn.Module class, a factory returning one, or an nn.Module instance, "
                            f"got {type(module).__name__}.")
        factory = module
    else:
        if info.get("defined_in") == "R":
            raise ValueError(f"{path!r} holds a model defined in R (nn_module {info.get('class_name')!r}), which "
                             f"Python can't rebuild without R; {how}.")
        if spec is None:
            raise ValueError(f"{path!r} does not say which module class it holds; {how}.")
        try:
            factory = _resolve_import_path(spec, path)
        except NotImportedError as e:
            raise NotImportedError(f"Could not find the module {spec!r} saved in {path!r}: {e}; or {how}.") from e
        except Exception as e:
            raise ImportError(f"Could not import the module {spec!r} saved in {path!r} "
                              f"({type(e).__name__}: {e}); {how}.") from e
        if not (isinstance(factory, type) and issubclass(factory, nn.Module)):
            # Calling an arbitrary function named by a file (with arguments from the file) could run
            # anything; only nn.Module classes are built automatically.
            raise ValueError(f"{path!r} was saved from the factory {spec!r}, which pyluz does not call on its own "
                             f"(only nn.Module classes are); {how}.")
        if kind == "instance" and hparams:
            raise ValueError(f"{path!r} was saved from a module instance; {how}.")
    if _has_repr(hparams):
        bad = [k for k, v in hparams.items() if _has_repr(v)]
        raise ValueError(f"The hparams {bad} of {path!r} could not be saved, so the module can't be rebuilt from "
                         f"them; pass `module=` an already built instance.")
    if shapes is None:  # a factory given by the caller is the caller's code: build it directly
        try:
            model = factory(**hparams)
        except Exception as e:
            name = getattr(factory, "__name__", type(factory).__name__)
            raise RuntimeError(f"Building the module {name}(**hparams) with the saved hparams {sorted(hparams)} "
                               f"failed ({type(e).__name__}: {e}); {how}.") from e
        if not isinstance(model, nn.Module):
            raise TypeError(f"`module` must build a torch.nn.Module, but it returned {type(model).__name__}.")
        return model, factory
    return _build_checked(factory, hparams, shapes, spec, path, how), factory


def load(path, module=None, loss=None, optimizer=None, metrics=None, trust_program=False):
    """Load a model saved with `Fitted.save()` / `save_fitted()`; returns a `pyluz.Fitted`.

    The module is rebuilt from its saved import path (`package.module:Class`) with the saved
    hparams, then the weights are loaded (on CPU; move it with `fitted.model.to(device)`). The
    module must already be imported (`import package.module` before loading: pyluz never imports
    what a file names). Pass `module=` the class (or a factory) when it can't be imported (defined
    in a script or a notebook), or an already built instance to load the weights into. `loss`, `optimizer` and
    `metrics` (as in `setup()`) are not stored in the file; pass them to use `evaluate()`. Loading
    never unpickles objects: a crafted file can't run code.

    A model defined in R (`nn_module()`) can't be rebuilt without R. Its file comes with a program
    (`<path>.pt2`, see `pyluz.export`) that runs the forward pass: `trust_program=True` loads it
    (after checking its sha256 against the model file), giving a `Fitted` whose `.model` is a
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

    Example::

        fitted.save("model.safetensors")
        fitted = pyluz.load("model.safetensors")                 # Net importable from its module
        fitted = pyluz.load("model.safetensors", module=Net)     # Net defined in this script
        fitted.predict(x)
        fitted = pyluz.load("r_model.safetensors", trust_program=True)  # nn_module() saved from R
    """
    from .module import LuzModule, check_training_args
    from .results import Fitted

    check_training_args(loss, optimizer, metrics)
    path = _check_existing(path)
    if not _looks_like_safetensors(path):
        raise UnsafeFileError(f"`path`: {path!r} is not a pyluz model file (a safetensors file written by "
                              "Fitted.save()). pyluz does not read pickled models, which could run code; checkpoints "
                              "load with pyluz.load_checkpoint().")
    tensors, info = _read_safetensors(path)
    if not info or info.get("format") != FITTED_FORMAT:
        raise ValueError(f"`path`: {path!r} is not a fitted model file written by pyluz (weights-only files load with "
                         "pyluz.load_model_weights(model, path)).")
    if int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"`path`: {path!r} uses format version {info['format_version']}, newer than this pyluz "
                         f"understands ({FORMAT_VERSION}); update pyluz.")
    if not isinstance(trust_program, bool):
        raise TypeError(f"`trust_program` must be True or False, got {trust_program!r}.")
    program = info.get("program") if module is None else None
    if program is not None:
        check_entry(program, path)
    records = check_records(from_json(info.get("records") or {"metrics": {"train": [], "valid": []}}),
                            f"The records saved in {path!r}")
    shapes = {k: tuple(t.shape) for k, t in tensors.items()} if module is None else None
    try:
        model, source = _build_module(info, module, path, shapes)
    except (ImportError, ValueError, RuntimeError) as e:
        if not program:
            raise
        if not trust_program:
            raise type(e)(f"{e}\nThe file comes with a program ({program.get('file')!r}, {program.get('format')}) that "
                          "runs the forward pass without the module class: pyluz.load(path, trust_program=True). "
                          "Loading a program can run code stored in it (torch.export.load unpickles parts of it), so "
                          "do this only for files you trust.") from e
        model = source = load_program(program, path, name=info.get("class_name"))
    else:
        _load_state(model, tensors, path)
    luz_module = LuzModule(source, loss=loss, optimizer=optimizer, metrics=metrics,
                           hparams=from_json(info.get("hparams") or {}),
                           opt_hparams=from_json(info.get("opt_hparams") or {}))
    opt_names = info.get("opt_names") or ["opt"]
    if not (isinstance(opt_names, list) and all(isinstance(n, str) for n in opt_names)):
        raise ValueError(f"The optimizer names saved in {path!r} are not a list of strings; the file is damaged or "
                         "crafted.")
    return Fitted(model=model, records=records, luz_module=luz_module, opt_names=opt_names)


def save_model_weights(obj, path):
    """Save only the model's weights (its state dict) of a Fitted or an nn.Module, as safetensors.

    Example::

        pyluz.save_model_weights(fitted, "weights.safetensors")
        pyluz.load_model_weights(other_fitted, "weights.safetensors")   # in place
    """
    model = _model_of(obj)
    path = check_output_path(path)
    _write_safetensors(path, _state_tensors(model), {"format": WEIGHTS_FORMAT, "format_version": FORMAT_VERSION})
    return path


def load_model_weights(obj, path):
    """Load weights into the model of a Fitted (or an nn.Module) in place; returns None.

    `path` may be a weights file, a fitted model file, a checkpoint (its model part) or a
    `torch.save`d state dict; only tensors are read, never pickled objects.

    Example::

        pyluz.load_model_weights(fitted, "weights.safetensors")
    """
    model = _model_of(obj)
    state = read_state_file(path)
    _load_state(model, state, path)


# -- RNG states ----------------------------------------------------------------------------------


__all__ = ["UnsafeFileError", "save_fitted", "load", "read_metadata", "save_model_weights", "load_model_weights",
           "atomic_write"]
