"""Programs that run an R-defined model's forward pass without R.

A module written with R's ``nn_module()`` is a Python ``torch.nn.Module`` whose ``forward`` calls
back into R (see ``pyluz.interop.torch_class``), so a Python process without R can't rebuild it from a
saved file. When such a model is saved (``save_fitted`` / R's ``luz_save``), pyluz also captures
its forward pass as a program, next to the model file:

* ``torch.export.export`` first (``<path>.pt2``, written with ``torch.export.save``), with a
  dynamic batch dimension (``Dim.AUTO`` on dim 0 of every input tensor). R's code calls Python
  torch ops on the tensors it is given, so tracing through the dispatcher records them as aten
  ops; shape reads such as ``x$size(1)`` stay symbolic.
* If export fails (e.g. data-dependent control flow in the forward), ``torch.jit.trace``
  (``<path>.jit.pt``), traced on one row; a traced program bakes in shapes, so it is run one row
  at a time.
* When export succeeds but specialises the batch size, the program is exported again on one row
  and likewise run one row at a time.

Every program is checked before it is written: on a perturbed copy of the example input it must
give the same output as the model (else nothing is saved and a warning says why). The file's
sha256 is recorded in the model file's JSON metadata (``"program"``).

The example input is a small copy of what the fit last fed the model (``Fitted.example_input``,
up to 2 rows). A fit keeps it only when asked to, with the ``pyluz.callbacks.KeepExampleInput``
callback (the R front end adds it; a pure-Python fit does no work for this). Set
``fitted.example_input`` yourself for a model that has none (e.g. one loaded with ``module=``).

Security: neither ``torch.export.load`` nor ``torch.jit.load`` is safe on untrusted files
(``torch.export.load`` unpickles parts of the archive with ``weights_only=False`` and ``eval``s
shape expressions with sympy; ``torch.jit.load`` runs the TorchScript ``__setstate__`` stored in
the file, and TorchScript can write files with ``aten::save``). pyluz therefore loads a program
only when the caller says ``trust_program=True``, and only after its sha256 matches the metadata.
"""

import hashlib
import io
import math
import os
import warnings

import torch
from torch import nn

from .files import atomic_write
from .interop.errors import strip_tags
from .interop.guard import is_r_callable
from .nested import concat, is_namedtuple, map_structure, map_tensors, tensors

EXPORT_FORMAT = "torch.export"
JIT_FORMAT = "torch.jit"
_SUFFIX = {EXPORT_FORMAT: ".pt2", JIT_FORMAT: ".jit.pt"}
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


def save_program(model, example, path):
    """Capture the program of `model` and write it next to the model file `path`.

    Returns the metadata entry `{"file", "format", "batch", "sha256", "torch_version"}`; the file
    name is relative to the model file's folder. Raises `ExportError` when no program can be made.
    """
    data, info = capture(model, example)
    file = os.path.basename(path) + _SUFFIX[info["format"]]
    atomic_write(os.path.join(os.path.dirname(os.path.abspath(path)), file), lambda f: f.write(data))
    return {
        "file": file,
        **info,
        "sha256": hashlib.sha256(data).hexdigest(),
        "torch_version": torch.__version__.split("+")[0],
    }


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


def _program_path(entry, path):
    file = entry.get("file")
    if (
        not isinstance(file, str)
        or not file
        or file in (".", "..")
        or os.path.basename(file) != file
        or "/" in file
        or "\\" in file
    ):
        raise ValueError(
            f"The program entry of {path!r} names {file!r}, which is not a file name next to the model "
            "file; the file is damaged or crafted."
        )
    return os.path.join(os.path.dirname(os.path.abspath(path)), file)


def check_entry(entry, path):
    """Raise ValueError unless `entry` is a program entry as `save_program` writes it."""
    if (
        not isinstance(entry, dict)
        or entry.get("format") not in _SUFFIX
        or entry.get("batch") not in ("dynamic", 1)
        or not isinstance(entry.get("sha256"), str)
    ):
        raise ValueError(
            f"The program entry of {path!r} is not one pyluz writes ({entry!r}); the file is damaged or " "crafted."
        )
    _program_path(entry, path)
    return entry


def load_program(entry, path, name=None):
    """A `ProgramModule` running the program that the metadata `entry` of model file `path` names.

    Verifies the program file's sha256 against the metadata first, then loads the verified bytes.
    Only call this for files you trust (see the module docstring): loading can run code.
    """
    check_entry(entry, path)
    file = _program_path(entry, path)
    if not os.path.isfile(file):
        raise FileNotFoundError(
            f"{path!r} comes with a program in {os.path.basename(file)!r}, but there is no such "
            "file next to it; copy both files together."
        )
    with open(file, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise ValueError(
            f"The program {file!r} does not match the sha256 recorded in {path!r}: it was changed or "
            "belongs to another save; refusing to load it."
        )
    try:
        if entry["format"] == EXPORT_FORMAT:
            program = torch.export.load(io.BytesIO(data)).module()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                program = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as e:
        raise RuntimeError(
            f"Loading the program {file!r} failed ({type(e).__name__}: {e}). It was written by torch "
            f"{entry.get('torch_version')}; this is torch {torch.__version__}."
        ) from e
    return ProgramModule(program, entry["format"], entry["batch"], name=name)


__all__ = [
    "ExportError",
    "ProgramModule",
    "example_rows",
    "is_r_backed",
    "capture",
    "save_program",
    "check_entry",
    "load_program",
]
