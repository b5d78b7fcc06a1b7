"""Files: path checks, atomic writes and the two safe readers (safetensors, weights-only torch files).

Every file pyluz writes goes through `atomic_write` (temp file in the same folder, fsync, then
`os.replace`), so a crash at any moment leaves the old file or the new one, never half of it.
Every file pyluz reads goes through `read_safetensors` (a JSON header plus raw tensor bytes) or
`torch_load` (`torch.load(weights_only=True)`, which rebuilds only tensors, numbers, strings and
plain containers): nothing here unpickles arbitrary objects, so a crafted file can't run code.

A crafted file can't make a reader hang or allocate what it asks either: only regular files are
opened (never a FIFO or a device, `open_regular`), the safetensors header and the pyluz metadata
are size-capped (`MAX_HEADER_BYTES`, `MAX_METADATA_BYTES`), and what `torch_load` returns is
walked once within `MAX_NODES` (`check_plain_tree`), so a list-DAG fails here and not in a later loop.
"""

import hashlib
import json
import os
import pickle
import re
import socket
import stat
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
        raise ValueError(
            f"`{argument}` {path!r} is a directory; give a file name such as "
            f"{os.path.join(path, 'model.safetensors')!r}."
        )
    return path


def check_existing(path, argument="path"):
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
        raise ValueError(
            f"`{argument}`: {path!r} is not a regular file (a FIFO, socket or device?); pyluz reads "
            "models and checkpoints only from regular files."
        )


def open_regular(path, argument="path"):
    """Open `path` for binary reading, refusing anything but a regular file without blocking on it.

    `O_NONBLOCK` keeps `open()` from waiting for a writer when `path` was swapped for a FIFO after
    `check_existing` looked at it; the check itself is then done on the opened descriptor.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_regular(os.fstat(fd).st_mode, path, argument)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


# Temp files are `.<target name>.<pid>@<host tag>.<8 hex>.tmp`: the pid and host say whose they are, so
# a later write removes those of dead processes on this host and never a live writer's.
_HOST_TAG = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)(?:@(?P<host>[0-9a-f]{8}))?\.[0-9a-f]{8}\.tmp$")
_IN_FLIGHT = set()  # temp paths this process is writing right now


def atomic_write(path, write, durable_rename=True):
    """Call `write(fileobj)` on a temp file next to `path`, fsync it, then `os.replace` it onto `path`.

    A crash at any moment leaves `path` either as it was or fully written; the temp file is removed
    when `write` fails, and one left by a killed process (SIGKILL, power loss) is removed by the next
    write into the same directory. The directory is fsynced too, so the rename survives a power
    loss; `durable_rename=False` skips that (one fsync less) for files rewritten often whose
    previous version is a complete fallback: after a power loss `path` may then still be that one.
    """
    pending = PendingFile(path)
    try:
        write(pending.file)
    except BaseException:
        pending.discard()
        raise
    return pending.commit(durable_rename)


class PendingFile:
    """`atomic_write` in two halves: the temp file next to `path`, open in `.file`; `commit()` fsyncs it and
    renames it onto `path`, `discard()` removes it. The halves may run on different threads (AutoResume
    writes the bytes on the training thread, into the page cache, and commits on its writer thread,
    whose only work is then the blocking syscalls).

    >>> import tempfile
    >>> pending = PendingFile(os.path.join(tempfile.mkdtemp(), "out.bin"))
    >>> _ = pending.file.write(b"data")
    >>> open(pending.commit(), "rb").read()
    b'data'
    """

    def __init__(self, path):
        self.path = check_path(path)
        self.directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(self.directory, exist_ok=True)
        remove_stale_temp_files(self.directory)
        name = f".{os.path.basename(self.path)}.{os.getpid()}@{_HOST_TAG}.{uuid.uuid4().hex[:8]}.tmp"
        self.temp = os.path.join(self.directory, name)
        _IN_FLIGHT.add(self.temp)
        try:
            self.file = open(self.temp, "xb")
        except BaseException:
            _IN_FLIGHT.discard(self.temp)
            raise

    def commit(self, durable_rename=True):
        """fsync the temp file, rename it onto `path` (then fsync the directory unless `durable_rename=False`)."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp, self.path)
        except BaseException:
            self.discard()
            raise
        _IN_FLIGHT.discard(self.temp)
        if durable_rename:
            _fsync_dir(self.directory)
        return self.path

    def discard(self):
        """Close and remove the temp file (`path` is left as it was)."""
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass
        _IN_FLIGHT.discard(self.temp)


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


def looks_like_safetensors(path):
    with open_regular(path) as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < n <= os.path.getsize(path) - 8


# Caps on what a file can make pyluz parse: json.loads of N bytes of tiny objects peaks near 20 N of
# memory, so 8 MiB of metadata (records of tens of thousands of epochs) stays under ~200 MB.
MAX_HEADER_BYTES = 64 * 2**20  # the safetensors JSON header (tensor names, shapes, metadata)
MAX_METADATA_BYTES = 8 * 2**20  # the "pyluz" JSON document in it
MAX_NODES = 2_000_000  # containers + leaves in records / checkpoint data, counted along every path


def check_header_size(path, argument="path"):
    """Raise ValueError when the safetensors header of `path` is larger than pyluz reads."""
    with open_regular(path, argument) as f:
        n = int.from_bytes(f.read(8), "little")
    if n > MAX_HEADER_BYTES:
        raise ValueError(
            f"`{argument}`: the safetensors header of {path!r} is {n} bytes, more than pyluz reads "
            f"({MAX_HEADER_BYTES}); the file is damaged or crafted."
        )


def parse_metadata(meta, path, argument="path"):
    """The pyluz JSON document of a safetensors metadata map (size-capped), or None."""
    text = meta.get("pyluz")
    if text is None:
        return None
    if len(text) > MAX_METADATA_BYTES:
        raise ValueError(
            f"`{argument}`: the pyluz metadata of {path!r} is {len(text)} characters, more than pyluz "
            f"reads ({MAX_METADATA_BYTES}); the file is damaged or crafted."
        )
    try:
        info = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError; deep nesting recurses
        raise ValueError(
            f"`{argument}`: the pyluz metadata of {path!r} is not valid JSON " f"({type(e).__name__}: {str(e)[:200]})."
        ) from e
    if not isinstance(info, dict):
        raise ValueError(f"`{argument}`: the pyluz metadata of {path!r} is not a JSON object.")
    return info


def read_safetensors(path, argument="path"):
    """(tensors, pyluz metadata dict or None) of a safetensors file, on CPU."""
    from safetensors import safe_open

    check_header_size(path, argument)
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError and friends: a damaged or foreign file
        raise ValueError(f"`{argument}`: {path!r} is not a readable safetensors file ({e}).") from e
    return tensors, parse_metadata(meta, path, argument)


def read_safetensors_metadata(path, argument="path"):
    """The pyluz metadata dict (or None) of a safetensors file, read from its header only (no tensor data)."""
    from safetensors import safe_open

    check_header_size(path, argument)
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise ValueError(f"`{argument}`: {path!r} is not a readable safetensors file ({e}).") from e
    return parse_metadata(meta, path, argument)


PLAIN_LEAVES = (bool, int, float, str, type(None))


def check_plain_tree(value, where, leaves=PLAIN_LEAVES, shared_ok=False, budget=MAX_NODES):
    """Raise ValueError unless `value` is dicts/lists/tuples of `leaves`, at most `budget` nodes.

    Nodes are counted along every path, so data whose containers are shared (a list-DAG such as
    `b = [b, b]` forty times: 234 bytes of pickle, 2**40 paths) fails after `budget` steps instead of
    hanging whatever walks it later. `shared_ok=False` also refuses any container reached twice.
    Iterative, so deep nesting can't overflow the stack.

    >>> check_plain_tree({"a": [1, 2.0, "x"]}, "records")
    {'a': [1, 2.0, 'x']}
    """
    seen = set()
    stack = [(value, where)]
    count = 0
    while stack:
        item, at = stack.pop()
        count += 1
        if count > budget:
            raise ValueError(
                f"{where} holds more than {budget} values (or containers shared many times over); the "
                "file is damaged or crafted."
            )
        if isinstance(item, (dict, list, tuple)):
            if not shared_ok:
                if id(item) in seen:
                    raise ValueError(
                        f"{at} is the same container as another part of {where}; pyluz files hold "
                        "plain trees, so the file is damaged or crafted."
                    )
                seen.add(id(item))
            if isinstance(item, dict):
                for k, v in item.items():
                    if not isinstance(k, (str, int)):
                        raise ValueError(
                            f"{at} has a key of type {type(k).__name__}; only strings and integers " "are expected."
                        )
                    stack.append((v, f"{at}[{k!r}]"))
            else:
                stack.extend((v, f"{at}[{i}]") for i, v in enumerate(item))
        elif not isinstance(item, leaves):
            raise ValueError(
                f"{at} is a {type(item).__name__}; only numbers, strings, None and lists/dicts of them are "
                "expected there."
            )
    return value


TORCH_FILE_LEAVES = (*PLAIN_LEAVES, complex, bytes, torch.Tensor, torch.dtype, torch.device, torch.Size)


def torch_load(path, argument="path"):
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
    check_plain_tree(obj, f"`{argument}` ({path!r})", leaves=TORCH_FILE_LEAVES, shared_ok=True)
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
            f"could run code). Details: {first}"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"`{argument}`: {path!r} is neither a safetensors file nor a torch checkpoint ({e}).") from e


__all__ = [
    "UnsafeFileError",
    "MAX_HEADER_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_NODES",
    "PLAIN_LEAVES",
    "TORCH_FILE_LEAVES",
    "check_output_path",
    "check_existing",
    "open_regular",
    "atomic_write",
    "remove_stale_temp_files",
    "remove_temp_files",
    "looks_like_safetensors",
    "check_header_size",
    "parse_metadata",
    "read_safetensors",
    "read_safetensors_metadata",
    "check_plain_tree",
    "torch_load",
]
