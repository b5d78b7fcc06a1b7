"""Tensor ops and methods with R torch's conventions, and R's operators on tensors.

Each op that takes dims, sizes or indices has a :class:`Spec` saying which
arguments are 1-based dims, which are integers and which are index tensors,
and whether returned indices are shifted to 1-based. Serves
``rpkg/R/torch-ops.R`` (``torch_*`` functions, ``$`` methods, ``Ops``/``Math``).
"""

from __future__ import annotations

import math
import operator

import numpy as np
import torch

from .torch_indices import dim, index, to_1_based, to_int
from .torch_tensor import INT32_MAX as _INT32_MAX
from .torch_tensor import as_dtype, as_tensor_arg, from_r

__all__ = ["op", "method", "is_method", "binop", "unop", "mathop", "SPECS", "Spec"]

Tensor = torch.Tensor


class Spec:
    """How to translate one op.  Positions count arguments after the first
    (the tensor the op or method applies to)."""

    __slots__ = ("dims", "ints", "idx", "out", "vdims", "vints", "fn")

    def __init__(self, d="", i="", x="", out=None, vd=None, vi=None, fn=None):
        self.dims = _parse(d)
        self.ints = _parse(i)
        self.idx = _parse(x)
        self.out = out
        self.vdims = vd  # (pos, kw name): all positional args from pos are dims
        self.vints = vi  # (pos, kw name): all positional args from pos are sizes
        self.fn = fn  # python name when it differs


def _parse(s):
    out = []
    for tok in s.split():
        name, pos = tok.split(":")
        out.append((int(pos), name))
    return tuple(out)


def _apply_one(args, kwargs, pos, name, conv):
    if pos < len(args):
        args[pos] = conv(args[pos])
    elif name in kwargs:
        kwargs[name] = conv(kwargs[name])


def _translate(spec, args, kwargs):
    if spec.vdims is not None:
        pos, name = spec.vdims
        for k in range(pos, len(args)):
            args[k] = dim(args[k])
        if name in kwargs:
            kwargs[name] = dim(kwargs[name])
    if spec.vints is not None:
        pos, name = spec.vints
        for k in range(pos, len(args)):
            args[k] = to_int(args[k])
        if name in kwargs:
            kwargs[name] = to_int(kwargs[name])
    for pos, name in spec.dims:
        _apply_one(args, kwargs, pos, name, dim)
    for pos, name in spec.ints:
        _apply_one(args, kwargs, pos, name, to_int)
    for pos, name in spec.idx:
        _apply_one(args, kwargs, pos, name, index)


def _result(spec, res):
    if isinstance(res, Tensor):
        return res + 1 if spec is not None and spec.out == "all" else res
    if isinstance(res, torch.Size):
        return [d if d <= _INT32_MAX else float(d) for d in res]
    if isinstance(res, tuple):
        items = list(res)
        if spec is not None:
            if spec.out == "second" and len(items) >= 2:
                items[1] = to_1_based(items[1])
            elif spec.out == "all":
                items = [to_1_based(e) for e in items]
        return items
    if isinstance(res, int) and not isinstance(res, bool) and abs(res) > _INT32_MAX:
        return float(res)
    return res


_D = "dim:0"
SPECS = {
    # reductions (dim first)
    **{
        n: Spec(_D)
        for n in (
            "sum",
            "mean",
            "prod",
            "std",
            "var",
            "nansum",
            "nanmean",
            "logsumexp",
            "amax",
            "amin",
            "all",
            "any",
            "count_nonzero",
            "cumsum",
            "cumprod",
            "logcumsumexp",
            "softmax",
            "log_softmax",
            "squeeze",
            "unsqueeze",
            "unbind",
            "size",
            "stride",
            "aminmax",
            "std_mean",
            "var_mean",
            "cat",
            "stack",
            "hstack",
            "vstack",
            "concat",
            "concatenate",
            "glu",
        )
    },
    "argmax": Spec(_D, out="all"),
    "argmin": Spec(_D, out="all"),
    "max": Spec(_D, out="second"),
    "min": Spec(_D, out="second"),
    "median": Spec(_D, out="second"),
    "nanmedian": Spec(_D, out="second"),
    "mode": Spec(_D, out="second"),
    "cummax": Spec(_D, out="second"),
    "cummin": Spec(_D, out="second"),
    "sort": Spec(_D, out="second"),
    "argsort": Spec(_D, out="all"),
    "topk": Spec("dim:1", i="k:0", out="second"),
    "kthvalue": Spec("dim:1", i="k:0", out="second"),
    "norm": Spec("dim:1"),
    "flatten": Spec("start_dim:0 end_dim:1"),
    "transpose": Spec("dim0:0 dim1:1"),
    "swapaxes": Spec("axis0:0 axis1:1"),
    "swapdims": Spec("dim0:0 dim1:1"),
    "movedim": Spec("source:0 destination:1"),
    "moveaxis": Spec("source:0 destination:1"),
    "permute": Spec(vd=(0, "dims")),
    "flip": Spec(vd=(0, "dims")),
    "roll": Spec("dims:1", i="shifts:0"),
    "rot90": Spec("dims:1", i="k:0"),
    "diagonal": Spec("dim1:1 dim2:2", i="offset:0"),
    "diag_embed": Spec("dim1:1 dim2:2", i="offset:0"),
    "tril": Spec(i="diagonal:0"),
    "triu": Spec(i="diagonal:0"),
    "diag": Spec(i="diagonal:0"),
    "select": Spec(_D, x="index:1"),
    "narrow": Spec(_D, i="length:2", x="start:1"),
    "gather": Spec(_D, x="index:1"),
    "index_select": Spec(_D, x="index:1"),
    "index_add": Spec(_D, x="index:1"),
    "index_add_": Spec(_D, x="index:1"),
    "index_copy": Spec(_D, x="index:1"),
    "index_copy_": Spec(_D, x="index:1"),
    "index_fill": Spec(_D, x="index:1"),
    "index_fill_": Spec(_D, x="index:1"),
    "scatter": Spec(_D, x="index:1"),
    "scatter_": Spec(_D, x="index:1"),
    "scatter_add": Spec(_D, x="index:1"),
    "scatter_add_": Spec(_D, x="index:1"),
    "scatter_reduce": Spec(_D, x="index:1"),
    "scatter_reduce_": Spec(_D, x="index:1"),
    "take": Spec(x="index:0"),
    "take_along_dim": Spec("dim:1", x="indices:0"),
    "split": Spec("dim:1", i="split_size_or_sections:0 split_size:0"),
    "chunk": Spec("dim:1", i="chunks:0"),
    "tensor_split": Spec("dim:1", i="indices_or_sections:0"),
    "unflatten": Spec(_D, i="sizes:1"),
    "unfold": Spec("dimension:0", i="size:1 step:2"),
    "repeat_interleave": Spec("dim:1", i="repeats:0"),
    "cross": Spec("dim:1"),
    "diff": Spec("dim:1", i="n:0"),
    "cosine_similarity": Spec("dim:1"),
    "nonzero": Spec(out="all"),
    "argwhere": Spec(out="all"),
    "multinomial": Spec(i="num_samples:0", out="all"),
    "view": Spec(vi=(0, "size")),
    "reshape": Spec(vi=(0, "shape")),
    "expand": Spec(vi=(0, "size")),
    "repeat": Spec(vi=(0, "repeats")),
    "tile": Spec(vi=(0, "dims")),
    "new_zeros": Spec(vi=(0, "size")),
    "new_ones": Spec(vi=(0, "size")),
    "new_empty": Spec(vi=(0, "size")),
    "new_full": Spec(i="size:0"),
    "resize_": Spec(vi=(0, "size")),
    "sum_to_size": Spec(vi=(0, "size")),
    "round": Spec(i="decimals:0"),
    "bincount": Spec(i="minlength:1"),
    "histc": Spec(i="bins:0"),
    "renorm": Spec("dim:1"),
}


def _r_arguments(name, args, kwargs):
    """`name`'s spec and its arguments in Python's conventions (dims, dtypes); `kwargs` in place."""
    spec = SPECS.get(name)
    args = list(args)
    if "dtype" in kwargs:
        kwargs["dtype"] = as_dtype(kwargs["dtype"])
    if spec is not None:
        _translate(spec, args, kwargs)
    return spec, args


def op(name, first, *args, **kwargs):
    """Call ``torch.<name>(first, *args, **kwargs)`` with R conventions."""
    spec, args = _r_arguments(name, args, kwargs)
    if isinstance(first, (np.ndarray, float, int)) and not isinstance(first, bool) and name not in ("where",):
        first = from_r(first) if not isinstance(first, (float, int)) else torch.tensor(first)
    elif isinstance(first, (list, tuple)) and first and not isinstance(first[0], Tensor):
        first = from_r(first)
    args = [as_tensor_arg(a) if isinstance(a, np.ndarray) else a for a in args]
    if name == "where" and not args and not kwargs:
        res = torch.where(first)
        return [r + 1 for r in res]
    fn = getattr(torch, spec.fn if spec is not None and spec.fn else name)
    return _result(spec, fn(first, *args, **kwargs))


def method(name, self, *args, **kwargs):
    """Call ``self.<name>(*args, **kwargs)`` with R conventions."""
    spec, args = _r_arguments(name, args, kwargs)
    args = [as_tensor_arg(a, self) if isinstance(a, np.ndarray) else a for a in args]
    return _result(spec, getattr(self, name)(*args, **kwargs))


def is_method(name):
    """'method', 'property' or 'missing' for a Tensor attribute name."""
    attr = getattr(Tensor, name, None)
    if attr is None:
        return "missing"
    if isinstance(attr, (property,)) or type(attr).__name__ in ("getset_descriptor", "member_descriptor"):
        return "property"
    return "method" if callable(attr) else "property"


# ---------------------------------------------------------------------------
# operators (R's Ops/Math group generics)
# ---------------------------------------------------------------------------


def _logical(fn):
    def f(a, b):
        if not isinstance(a, Tensor):
            a = torch.as_tensor(a, device=b.device)
        if not isinstance(b, Tensor):
            b = torch.as_tensor(b, device=a.device)
        return fn(a, b)

    return f


_BINOPS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "^": operator.pow,
    "%%": operator.mod,
    "%/%": operator.floordiv,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "&": _logical(torch.logical_and),
    "|": _logical(torch.logical_or),
}


def binop(opname, a, b):
    ta = isinstance(a, Tensor)
    like = a if ta else b
    if not ta:
        a = as_tensor_arg(a, like)
    if not isinstance(b, Tensor):
        b = as_tensor_arg(b, like)
    fn = _BINOPS.get(opname)
    if fn is None:
        raise ValueError(f"operator {opname} is not supported for tensors")
    return fn(a, b)


def unop(opname, a):
    if opname == "-":
        return -a
    if opname == "!":
        return torch.logical_not(a)
    if opname == "+":
        return a
    raise ValueError(f"unary operator {opname} is not supported for tensors")


_MATH = {
    "ceiling": "ceil",
    "gamma": "lgamma_exp",
    "cumsum": "cumsum",
    "cumprod": "cumprod",
    "cummax": "cummax",
    "cummin": "cummin",
    "signif": "round",
}


def mathop(name, x, *args):
    if name == "log" and args:
        return torch.log(x) / math.log(args[0])
    if name == "round":
        return torch.round(x, decimals=int(args[0])) if args and args[0] else torch.round(x)
    if name in ("cumsum", "cumprod"):
        return getattr(torch, name)(x.flatten(), 0)
    if name in ("cummax", "cummin"):
        return getattr(torch, name)(x.flatten(), 0)[0]
    if name == "gamma":
        return torch.lgamma(x).exp()
    fn = getattr(torch, _MATH.get(name, name), None)
    if fn is None:
        raise ValueError(f"{name}() is not supported for tensors")
    return fn(x)
