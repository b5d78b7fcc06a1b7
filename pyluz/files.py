"""Files: path checks, atomic writes and the two safe readers (safetensors, weights-only torch files).

Every file pyluz writes goes through `atomic_write` (temp file in the same folder, fsync, then
`os.replace`), so a crash at any moment leaves the old file or the new one, never half of it.
Every file pyluz reads goes through `read_safetensors` (a JSON header plus raw tensor bytes) or
`torch_load` (`torch.load(weights_only=True)`, which rebuilds only tensors, numbers, strings and
plain containers): nothing here unpickles arbitrary objects, so a crafted file can't run code.
"""

import json
import os
import pickle
import uuid
import warnings

import torch

from .checks import check_path


class UnsafeFileError(ValueError):
    """A file that pyluz refuses to read because it holds more than tensors and plain data."""


def check_output_path(path, argument="path"):
    """A path to write a file to: not an existing directory."""
    path = check_path(path, argument)
    if os.path.isdir(path):
        raise ValueError(f"`{argument}` {path!r} is a directory; give a file name such as "
                         f"{os.path.join(path, 'model.safetensors')!r}.")
    return path


def check_existing(path, argument="path"):
    path = check_path(path, argument)
    if not os.path.exists(path):
        raise FileNotFoundError(f"`{argument}`: no file at {path!r}.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"`{argument}` must be a file, got the directory {path!r}.")
    return path


def atomic_write(path, write):
    """Call `write(fileobj)` on a temp file next to `path`, fsync it, then `os.replace` it onto `path`.

    A crash at any moment leaves `path` either as it was or fully written; the temp file is removed
    when `write` fails.
    """
    path = check_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
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
    _fsync_dir(directory)
    return path


def remove_temp_files(path):
    """Delete temp files that `atomic_write(path, ...)` left behind when a process died mid-write."""
    path = check_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}."
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


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


def looks_like_safetensors(path):
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < n <= os.path.getsize(path) - 8


def read_safetensors(path, argument="path"):
    """(tensors, pyluz metadata dict or None) of a safetensors file, on CPU."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError and friends: a damaged or foreign file
        raise ValueError(f"`{argument}`: {path!r} is not a readable safetensors file ({e}).") from e
    info = None
    if "pyluz" in meta:
        try:
            info = json.loads(meta["pyluz"])
        except json.JSONDecodeError as e:
            raise ValueError(f"`{argument}`: the pyluz metadata of {path!r} is not valid JSON ({e}).") from e
    return tensors, info


def torch_load(path, argument="path"):
    """`torch.load(weights_only=True)` on CPU; anything that would need unpickling code is refused."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):  # zip (torch.save) or a pickle
        raise ValueError(f"`{argument}`: {path!r} is neither a safetensors file nor a torch checkpoint.")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
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


__all__ = ["UnsafeFileError", "check_output_path", "check_existing", "atomic_write", "remove_temp_files",
           "looks_like_safetensors", "read_safetensors", "torch_load"]
