"""Programs that run an R-defined model's forward pass without R.

A module written with R's ``nn_module()`` is a Python ``torch.nn.Module`` whose ``forward`` calls
back into R (see ``pyluz.interop.torch_class``), so a Python process without R can't rebuild it from a
saved file. When such a model is saved (``save_fitted`` / R's ``luz_save``), pyluz also captures
its forward pass as a program, stored inside the model file (a uint8 tensor, ``PROGRAM_KEY``):

* ``torch.export.export`` first (saved with ``torch.export.save``), with a dynamic batch
  dimension (``Dim.AUTO`` on dim 0 of every input tensor). R's code calls Python torch ops on the
  tensors it is given, so tracing through the dispatcher records them as aten ops; shape reads
  such as ``x$size(1)`` stay symbolic.
* If export fails (e.g. data-dependent control flow in the forward), ``torch.jit.trace``, traced
  on one row; a traced program bakes in shapes, so it is run one row at a time.
* When export succeeds but specialises the batch size, the program is exported again on one row
  and likewise run one row at a time.

Capturing prints nothing: what torch writes meanwhile (graph dumps, logs, warnings) is kept off
the console (``quiet``). Every program is checked before it is written: on a perturbed copy of the example input it must
give the same output as the model (else the model file is saved without one, and its metadata
says why: ``"program_error"``, printed only by a verbose save). The program's size and sha256 are
recorded in the model file's JSON metadata (``"program"``).

The example input is a small copy of what the fit last fed the model (``Fitted.example_input``,
up to 2 rows). A fit keeps it only when asked to, with the ``pyluz.callbacks.KeepExampleInput``
callback (the R front end adds it; a pure-Python fit does no work for this). Set
``fitted.example_input`` yourself for a model that has none (e.g. one loaded with ``module=``).

Security: neither ``torch.export.load`` nor ``torch.jit.load`` is safe on untrusted files
(``torch.export.load`` unpickles parts of the archive with ``weights_only=False`` and ``eval``s
shape expressions with sympy; ``torch.jit.load`` runs the TorchScript ``__setstate__`` stored in
the file, and TorchScript can write files with ``aten::save``). pyluz therefore loads a program
only when the caller says ``trust_program=True``, and only after its size and sha256 match the
metadata.
"""

import contextlib
import hashlib
import io
import logging
import math
import os
import sys
import tempfile
import warnings

import torch
from torch import nn

from .interop.errors import strip_tags
from .interop.guard import is_r_callable
from .nested import concat, is_namedtuple, map_structure, map_tensors, tensors

EXPORT_FORMAT = "torch.export"
JIT_FORMAT = "torch.jit"
PROGRAM_KEY = ".pyluz.program"  # no state-dict key starts with a dot (module and parameter names are never empty)
EXAMPLE_ROWS = 2


class ExportError(RuntimeError):
    """The forward pass of a model could not be captured as a program."""


# -- the example input --------------------------------------------------------------------------


class _NoExample(Exception):
    pass


def example_rows(value, n=EXAMPLE_ROWS):
    """A small CPU copy of a model input: the first `n` rows (dim 0) of every tensor in it.

    Nested tuples/lists/dicts are kept; numbers, strings, booleans and None pass through. A batch
    with fewer rows is repeated up to `n` (the values only serve to trace the model). Returns None
    when the input is empty or holds anything else (namedtuples and dicts with non-string keys
    included: a program's input is a tensor or plain containers of them).

    >>> example_rows({"x": torch.arange(6.).reshape(3, 2)})["x"]
    tensor([[0., 1.],
            [2., 3.]])
    """
    try:
        return map_structure(lambda leaf: _rows(leaf, n), _plain_containers(value))
    except _NoExample:
        return None
    except Exception:  # best effort (it runs at the end of a fit): no example rather than an error
        return None


def _plain_containers(value):
    """`value` itself when its containers are plain tuples/lists/str-keyed dicts, else _NoExample."""
    if is_namedtuple(value) or (isinstance(value, dict) and not all(isinstance(k, str) for k in value)):
        raise _NoExample
    if isinstance(value, (list, tuple, dict)):
        for v in value.values() if isinstance(value, dict) else value:
            _plain_containers(v)
    return value


def _rows(leaf, n):
    if isinstance(leaf, torch.Tensor):
        t = leaf.detach()
        if t.dim() > 0:
            if t.shape[0] == 0:
                raise _NoExample
            t = t[:n]
            if t.shape[0] < n:
                t = t.repeat_interleave(math.ceil(n / t.shape[0]), dim=0)[:n]
        return t.to("cpu", copy=True).contiguous()
    if leaf is None or isinstance(leaf, (bool, int, float, str)):
        return leaf
    raise _NoExample


def is_r_backed(model):
    """True for modules defined in R (`nn_module()`), which Python can't rebuild without R."""
    return is_r_callable(model)


# -- capturing the program ------------------------------------------------------------------------


class _Forward(nn.Module):
    """A fixed `forward(x)` signature around the model (an R forward takes `*args, **kwargs`)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def _perturbed(example):
    """Another input of the same structure, to check that a program did not bake in values."""

    def change(t):
        return t * 0.75 + 0.25 if t.is_floating_point() else t

    return map_tensors(change, example)


def _batch_is_dynamic(ep):
    """Whether dim 0 of every tensor input of an ExportedProgram stayed symbolic."""
    from torch.fx.experimental.symbolic_shapes import is_concrete_int  # a specialised dim may be a constant SymInt

    names = set(ep.graph_signature.user_inputs)
    shapes = [
        n.meta["val"].shape
        for n in ep.graph.nodes
        if n.op == "placeholder" and n.name in names and isinstance(n.meta.get("val"), torch.Tensor)
    ]
    return all(len(s) > 0 and not is_concrete_int(s[0]) for s in shapes)


def _export(wrapper, example, one_row):
    """(format, batch, program, bytes) with torch.export: dynamic batch, else fixed at one row."""
    dims = map_tensors(lambda t: {0: torch.export.Dim.AUTO} if t.dim() > 0 else None, example)
    ep, batch = torch.export.export(wrapper, (example,), dynamic_shapes=(dims,)), "dynamic"
    if not _batch_is_dynamic(ep):  # the forward fixed the batch size: capture it on one row
        ep, batch = torch.export.export(wrapper, (one_row,)), 1
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    return EXPORT_FORMAT, batch, ep.module(), buf.getvalue()


def _trace(wrapper, one_row):
    """(format, 1, program, bytes) with torch.jit.trace on one row (traces bake in shapes)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():  # TracerWarnings (checked below instead) and torch.jit's deprecation
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(wrapper, (one_row,), check_trace=False)
        torch.jit.save(traced, buf)
    return JIT_FORMAT, 1, traced, buf.getvalue()


def _same(a, b):
    ta, tb = tensors(a), tensors(b)
    return len(ta) == len(tb) > 0 and all(
        x.shape == y.shape and torch.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(ta, tb, strict=True)
    )


def _first_line(error):
    text = strip_tags(str(error)).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def capture(model, example):
    """Capture `model`'s forward pass (in eval mode, on CPU) on `example`.

    Returns `(program_bytes, info)` where `info` has `format` ("torch.export" or "torch.jit") and
    `batch` ("dynamic", or 1: the program takes one row at a time). Tries torch.export, then
    torch.jit.trace; a program counts only if it matches the model on a perturbed input (3 rows
    for a dynamic batch, else 1). Raises `ExportError` with each attempt's reason otherwise.
    """
    if example is None:
        raise ExportError(
            "there is no example input (fit() keeps one; set `fitted.example_input` to a small batch " "of model input)"
        )
    wrapper = _Forward(model)
    devices = {t.device for t in [*model.parameters(), *model.buffers()]}
    device = devices.pop() if len(devices) == 1 else torch.device("cpu")
    modes = [(m, m.training) for m in model.modules()]
    one_row = example_rows(example, 1)
    checks = {"dynamic": _perturbed(example_rows(example, 3)), 1: _perturbed(one_row)}
    reasons = []
    try:
        if device.type != "cpu":
            model.to("cpu")  # a program captured on CPU loads anywhere; moved back below
        model.eval()
        for name, attempt in (
            (EXPORT_FORMAT, lambda: _export(wrapper, example, one_row)),
            (JIT_FORMAT, lambda: _trace(wrapper, one_row)),
        ):
            try:
                fmt, batch, program, data = attempt()
                with torch.no_grad():
                    same = _same(program(checks[batch]), model(checks[batch]))
            except Exception as e:  # export and trace fail with many error types
                reasons.append(f"{name}: {_first_line(e)}")
                continue
            if same:
                return data, {"format": fmt, "batch": batch}
            reasons.append(
                f"{name}: the captured program gives other outputs than the model (does the forward "
                "leave torch, e.g. convert tensors to R arrays?)"
            )
    finally:
        for m, training in modes:
            m.training = training
        if device.type != "cpu":
            model.to(device)
    raise ExportError("; ".join(reasons))


def program_entry(model, example):
    """Capture the program of `model`: `(tensor, entry)`, the program's bytes as a uint8 tensor to store
    under `PROGRAM_KEY` in the model file, and its metadata entry
    `{"key", "format", "batch", "bytes", "sha256", "torch_version"}`.

    Nothing reaches the console (see `quiet`); raises `ExportError` when no program can be made,
    with what torch printed in `.output`.
    """
    failure = None
    with quiet() as out:
        try:
            data, info = capture(model, example)
        except ExportError as e:
            failure = e
    if failure is not None:
        failure.output = out.text()
        raise failure
    entry = {
        "key": PROGRAM_KEY,
        **info,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "torch_version": torch.__version__.split("+")[0],
    }
    return torch.frombuffer(bytearray(data), dtype=torch.uint8), entry


class _Output:
    def __init__(self):
        self.parts = []

    def text(self):
        return "".join(self.parts)


@contextlib.contextmanager
def quiet():
    """Keep what torch.export / jit.trace print (graph dumps, logs, warnings) off the console.

    Python's `sys.stdout`/`sys.stderr`, file descriptors 1 and 2 (C++ logs), the `logging` module
    and warnings are redirected while the block runs; `out.text()` gives what they got.
    """
    with tempfile.TemporaryFile() as file:
        out = _Output()
        saved = []
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a front end's replacement stream may not flush
                pass
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(file.fileno(), fd)
            except OSError:  # no such descriptor (embedded interpreters): nothing to redirect
                pass
        py_out = io.StringIO()
        previous_disable = logging.root.manager.disable
        logging.disable(logging.CRITICAL)
        try:
            with (
                warnings.catch_warnings(record=True) as caught,
                contextlib.redirect_stdout(py_out),
                contextlib.redirect_stderr(py_out),
            ):
                warnings.simplefilter("always")
                yield out
        finally:
            logging.disable(previous_disable)
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            file.seek(0)
            out.parts += [
                file.read().decode("utf-8", "replace"),
                py_out.getvalue(),
                *(f"{w.category.__name__}: {w.message}\n" for w in caught),
            ]


# -- running a saved program ----------------------------------------------------------------------


class ProgramModule(nn.Module):
    """A module that runs a saved program (the forward pass of a model defined in R), without R.

    `forward(x)` takes what the model took (a tensor, or the same nested tuple/list/dict). With
    `batch == 1` the program was captured on one row and is run row by row, outputs concatenated.
    The program was captured in eval mode: `train()`/`eval()` change only the flag. Only the
    forward pass is saved: the model's own methods (`loss`, `step`, `predict`, ...) are not.
    """

    def __init__(self, program, format, batch, name=None):
        super().__init__()
        self.program = program
        self.format = format
        self.batch = batch
        self.source_name = name

    def train(self, mode=True):
        self.training = bool(mode)  # an exported GraphModule refuses train()/eval()
        return self

    def forward(self, x):
        if self.batch == "dynamic":
            return self.program(x)
        found = tensors(x)
        n = found[0].shape[0] if found else 1
        outs = [self.program(map_tensors(lambda t, i=i: t[i : i + 1] if t.dim() > 0 else t, x)) for i in range(n)]
        return concat(outs)

    def extra_repr(self):
        rows = "any batch size" if self.batch == "dynamic" else "run one row at a time"
        return f"{self.source_name or 'model'} as a {self.format} program ({rows})"


def check_entry(entry, path):
    """Raise ValueError unless `entry` is a program entry as `program_entry` writes it."""
    if isinstance(entry, dict) and "file" in entry and "key" not in entry:
        raise ValueError(
            f"{path!r} was saved by an older pyluz that wrote the program to a second file "
            f"({entry.get('file')!r}); this pyluz reads programs only from inside the model file. Load it "
            "with `module=` (from R: luz_load(path), which uses the stored R definition) and save it again."
        )
    if (
        not isinstance(entry, dict)
        or entry.get("key") != PROGRAM_KEY
        or entry.get("format") not in (EXPORT_FORMAT, JIT_FORMAT)
        or entry.get("batch") not in ("dynamic", 1)
        or not isinstance(entry.get("sha256"), str)
        or not isinstance(entry.get("bytes"), int)
        or isinstance(entry.get("bytes"), bool)
    ):
        raise ValueError(
            f"The program entry of {path!r} is not one pyluz writes ({entry!r}); the file is damaged or crafted."
        )
    return entry


def load_program(entry, tensor, path, name=None):
    """A `ProgramModule` running the program stored in model file `path` (`tensor`: its uint8 bytes).

    Checks the size and sha256 against the metadata `entry` first, then loads the verified bytes.
    Only call this for files you trust (see the module docstring): loading can run code.
    """
    check_entry(entry, path)
    if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.uint8 or tensor.dim() != 1:
        raise ValueError(
            f"{path!r} records a program but holds no program bytes ({PROGRAM_KEY!r}, uint8); the file is "
            "damaged or crafted."
        )
    data = tensor.numpy().tobytes()
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ValueError(
            f"The program stored in {path!r} does not match the size and sha256 its metadata records: it was "
            "changed; refusing to load it."
        )
    try:
        with quiet():
            if entry["format"] == EXPORT_FORMAT:
                program = torch.export.load(io.BytesIO(data)).module()
            else:
                program = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as e:
        raise RuntimeError(
            f"Loading the program stored in {path!r} failed ({type(e).__name__}: {e}). It was written by torch "
            f"{entry.get('torch_version')}; this is torch {torch.__version__}."
        ) from e
    return ProgramModule(program, entry["format"], entry["batch"], name=name)


__all__ = [
    "ExportError",
    "ProgramModule",
    "example_rows",
    "is_r_backed",
    "capture",
    "PROGRAM_KEY",
    "program_entry",
    "quiet",
    "check_entry",
    "load_program",
]
