"""R-torch conventions for tensors, used by the R package's compatibility layer.

R torch differs from PyTorch in a few systematic ways (see ``docs/r-torch-conventions.md``):

* dimensions are 1-based (negative ones count from the end, ``0`` is an error);
* indices given to or returned by ops are 1-based;
* R doubles become float32 tensors and R integers int64 tensors;
* ``[`` indexing is 1-based with inclusive ranges.

Everything here takes arguments as reticulate delivers them (R doubles arrive
as Python floats, R vectors as lists, R arrays as numpy arrays) and does the
translation in Python, so that one R -> Python crossing is enough per op.
"""

from __future__ import annotations

import math
import operator

import numpy as np
import torch

__all__ = [
    "from_r", "to_r", "shape", "op", "method", "binop", "unop", "mathop",
    "getitem", "setitem", "create", "arange", "manual_seed", "set_grad",
    "dim", "index", "to_int", "SPECS",
]

_INT32_MAX = 2**31 - 1
Tensor = torch.Tensor


# ---------------------------------------------------------------------------
# R values -> tensors and back
# ---------------------------------------------------------------------------

_NP_DEFAULT = {
    np.dtype("float64"): torch.float32,
    np.dtype("float32"): torch.float32,
    np.dtype("int32"): torch.int64,
    np.dtype("int64"): torch.int64,
    np.dtype("bool"): torch.bool,
    np.dtype("complex128"): torch.complex64,
}


def _number_list_dtype(values):
    if all(isinstance(v, bool) for v in values):
        return torch.bool
    if all(isinstance(v, int) for v in values):
        return torch.int64
    return torch.float32


def from_r(data, dtype=None, device=None, requires_grad=False):
    """Convert an R value (as reticulate passes it) to a tensor, R-torch style.

    R double -> float32, R integer -> int64, R logical -> bool; an R array keeps
    its ``[i, j]`` indexing (reticulate hands over F-ordered numpy arrays, which
    are copied into a C-contiguous tensor).
    """
    if isinstance(data, Tensor):
        t = data.detach().clone()
    elif isinstance(data, np.ndarray):
        if data.dtype.kind in "OUS":
            raise TypeError("torch_tensor(): character data can't be converted to a tensor")
        target = dtype if dtype is not None else _NP_DEFAULT.get(data.dtype)
        np_target = None
        if target is not None and target.is_floating_point and target in (torch.float32, torch.float64):
            np_target = np.float32 if target == torch.float32 else np.float64
        with np.errstate(invalid="ignore"):  # R's NA is a signalling NaN
            arr = np.array(data, dtype=np_target, order="C", copy=True)
        t = torch.from_numpy(arr)
        if target is not None and t.dtype != target:
            t = t.to(target)
    elif isinstance(data, bool):
        t = torch.tensor([data], dtype=torch.bool)
    elif isinstance(data, int):
        t = torch.tensor([data], dtype=torch.int64)
    elif isinstance(data, float):
        t = torch.tensor([data], dtype=torch.float32)
    elif isinstance(data, (list, tuple)):
        if len(data) and all(isinstance(v, Tensor) for v in data):
            t = torch.stack([v.detach() for v in data])
        else:
            t = torch.tensor(list(data), dtype=_number_list_dtype(data))
    else:
        raise TypeError(f"torch_tensor(): can't convert an object of type {type(data).__name__} to a tensor")
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    if device is not None:
        t = t.to(device)
    if requires_grad:
        t.requires_grad_(True)
    return t


def as_tensor_arg(x, like=None):
    """Operand conversion for R operators: R vectors/arrays become tensors."""
    if isinstance(x, Tensor) or x is None:
        return x
    if isinstance(x, (np.ndarray, list, tuple)):
        t = from_r(x)
        if like is not None and t.device != like.device:
            t = t.to(like.device)
        return t
    return x


def to_r(t):
    """Tensor -> (numpy array, overflowed) for ``as_array()``.

    int64 becomes int32 (R integer) like R torch; values beyond R's integer
    range make it a float64 array and set ``overflowed``.
    """
    if not isinstance(t, Tensor):
        raise TypeError("as_array() expects a tensor")
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    overflowed = False
    dt = t.dtype
    if dt in (torch.float16, torch.bfloat16):
        t = t.float()
    elif dt in (torch.int8, torch.int16, torch.uint8):
        t = t.int()
    elif dt == torch.int64:
        if t.numel() and (t.max().item() > _INT32_MAX or t.min().item() < -_INT32_MAX):
            overflowed = True
            t = t.double()
        else:
            t = t.int()
    elif dt == torch.complex32:
        t = t.to(torch.complex64)
    if t.is_conj():
        t = t.resolve_conj()
    return t.numpy(), overflowed


def shape(t):
    """Shape as a list of ints (floats when a size exceeds R's integer range)."""
    return [s if s <= _INT32_MAX else float(s) for s in t.shape]


# ---------------------------------------------------------------------------
# argument translation
# ---------------------------------------------------------------------------

def to_int(v):
    """Integral floats (R doubles) -> ints, recursively in lists/tuples."""
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"expected an integer value, got {v}")
        return int(v)
    if isinstance(v, (list, tuple)):
        return [to_int(e) for e in v]
    if isinstance(v, np.ndarray):
        return [to_int(e) for e in v.tolist()]
    return v


def dim(v):
    """1-based R dimension(s) -> 0-based.  Negative dims count from the end."""
    if v is None or isinstance(v, (bool, str, Tensor)):
        return v
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"Dimension must be an integer, got {v}")
        v = int(v)
    if isinstance(v, int):
        if v == 0:
            raise ValueError("Dimension is 1-based, but found 0.")
        return v - 1 if v > 0 else v
    if isinstance(v, (list, tuple, np.ndarray)):
        return [dim(e) for e in (v.tolist() if isinstance(v, np.ndarray) else v)]
    return v


def _check_index_tensor(t):
    if t.device.type == "cpu" and t.numel() and bool((t == 0).any()):
        raise ValueError("Indexing starts at 1 but found a 0.")


def index(v):
    """1-based R index (scalar, vector or integer tensor) -> 0-based."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"Index must be an integer, got {v}")
        v = int(v)
    if isinstance(v, int):
        if v == 0:
            raise ValueError("Indexing starts at 1 but found a 0.")
        return v - 1 if v > 0 else v
    if isinstance(v, (list, tuple, np.ndarray)):
        v = torch.as_tensor(np.asarray(v, dtype=np.int64))
    if isinstance(v, Tensor):
        if v.is_floating_point():
            v = v.long()
        if v.dtype == torch.bool:
            return v
        if v.dtype != torch.int64:
            v = v.long()
        _check_index_tensor(v)
        return torch.where(v > 0, v - 1, v)
    return v


def _plus1(x):
    return x + 1 if isinstance(x, Tensor) else x


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
        self.fn = fn     # python name when it differs


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
                items[1] = _plus1(items[1])
            elif spec.out == "all":
                items = [_plus1(e) for e in items]
        return items
    if isinstance(res, int) and not isinstance(res, bool) and abs(res) > _INT32_MAX:
        return float(res)
    return res


_D = "dim:0"
SPECS = {
    # reductions (dim first)
    **{n: Spec(_D) for n in (
        "sum", "mean", "prod", "std", "var", "nansum", "nanmean", "logsumexp", "amax",
        "amin", "all", "any", "count_nonzero", "cumsum", "cumprod", "logcumsumexp",
        "softmax", "log_softmax", "squeeze", "unsqueeze", "unbind", "size", "stride",
        "aminmax", "std_mean", "var_mean", "cat", "stack", "hstack", "vstack",
        "concat", "concatenate", "glu")},
    "argmax": Spec(_D, out="all"), "argmin": Spec(_D, out="all"),
    "max": Spec(_D, out="second"), "min": Spec(_D, out="second"),
    "median": Spec(_D, out="second"), "nanmedian": Spec(_D, out="second"),
    "mode": Spec(_D, out="second"),
    "cummax": Spec(_D, out="second"), "cummin": Spec(_D, out="second"),
    "sort": Spec(_D, out="second"), "argsort": Spec(_D, out="all"),
    "topk": Spec("dim:1", i="k:0", out="second"),
    "kthvalue": Spec("dim:1", i="k:0", out="second"),
    "norm": Spec("dim:1"),
    "flatten": Spec("start_dim:0 end_dim:1"),
    "transpose": Spec("dim0:0 dim1:1"), "swapaxes": Spec("axis0:0 axis1:1"),
    "swapdims": Spec("dim0:0 dim1:1"),
    "movedim": Spec("source:0 destination:1"), "moveaxis": Spec("source:0 destination:1"),
    "permute": Spec(vd=(0, "dims")),
    "flip": Spec(vd=(0, "dims")),
    "roll": Spec("dims:1", i="shifts:0"),
    "rot90": Spec("dims:1", i="k:0"),
    "diagonal": Spec("dim1:1 dim2:2", i="offset:0"),
    "diag_embed": Spec("dim1:1 dim2:2", i="offset:0"),
    "tril": Spec(i="diagonal:0"), "triu": Spec(i="diagonal:0"),
    "diag": Spec(i="diagonal:0"),
    "select": Spec(_D, x="index:1"),
    "narrow": Spec(_D, i="length:2", x="start:1"),
    "gather": Spec(_D, x="index:1"),
    "index_select": Spec(_D, x="index:1"),
    "index_add": Spec(_D, x="index:1"), "index_add_": Spec(_D, x="index:1"),
    "index_copy": Spec(_D, x="index:1"), "index_copy_": Spec(_D, x="index:1"),
    "index_fill": Spec(_D, x="index:1"), "index_fill_": Spec(_D, x="index:1"),
    "scatter": Spec(_D, x="index:1"), "scatter_": Spec(_D, x="index:1"),
    "scatter_add": Spec(_D, x="index:1"), "scatter_add_": Spec(_D, x="index:1"),
    "scatter_reduce": Spec(_D, x="index:1"), "scatter_reduce_": Spec(_D, x="index:1"),
    "take": Spec(x="index:0"),
    "take_along_dim": Spec("dim:1", x="indices:0"),
    "split": Spec("dim:1", i="split_size_or_sections:0 split_size:0"),
    "chunk": Spec("dim:1", i="chunks:0"),
    "tensor_split": Spec("dim:1", i="indices_or_sections:0"),
    "unflatten": Spec(_D, i="sizes:1"),
    "unfold": Spec("dimension:0", i="size:1 step:2"),
    "repeat_interleave": Spec("dim:1", i="repeats:0"),
    "cross": Spec("dim:1"), "diff": Spec("dim:1", i="n:0"),
    "cosine_similarity": Spec("dim:1"),
    "nonzero": Spec(out="all"), "argwhere": Spec(out="all"),
    "multinomial": Spec(i="num_samples:0", out="all"),
    "view": Spec(vi=(0, "size")), "reshape": Spec(vi=(0, "shape")),
    "expand": Spec(vi=(0, "size")), "repeat": Spec(vi=(0, "repeats")),
    "tile": Spec(vi=(0, "dims")), "new_zeros": Spec(vi=(0, "size")),
    "new_ones": Spec(vi=(0, "size")), "new_empty": Spec(vi=(0, "size")),
    "new_full": Spec(i="size:0"), "resize_": Spec(vi=(0, "size")),
    "sum_to_size": Spec(vi=(0, "size")),
    "round": Spec(i="decimals:0"),
    "bincount": Spec(i="minlength:1"),
    "histc": Spec(i="bins:0"),
    "renorm": Spec("dim:1"),
}


def op(name, first, *args, **kwargs):
    """Call ``torch.<name>(first, *args, **kwargs)`` with R conventions."""
    spec = SPECS.get(name)
    args = list(args)
    if spec is not None:
        _translate(spec, args, kwargs)
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
    spec = SPECS.get(name)
    args = list(args)
    if spec is not None:
        _translate(spec, args, kwargs)
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
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "^": operator.pow, "%%": operator.mod, "%/%": operator.floordiv,
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
    "&": _logical(torch.logical_and), "|": _logical(torch.logical_or),
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


_MATH = {"ceiling": "ceil", "gamma": "lgamma_exp", "cumsum": "cumsum", "cumprod": "cumprod",
         "cummax": "cummax", "cummin": "cummin", "signif": "round"}


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


# ---------------------------------------------------------------------------
# creation
# ---------------------------------------------------------------------------

def _size(v):
    v = to_int(v)
    if isinstance(v, int):
        return [v]
    return list(v)


def create(kind, size=None, dtype=None, device=None, requires_grad=False, **kw):
    """torch_zeros/ones/empty/randn/rand/full/randint/randperm/eye/linspace."""
    opts = {"dtype": dtype, "device": device, "requires_grad": bool(requires_grad)}
    if kind in ("zeros", "ones", "empty", "randn", "rand"):
        return getattr(torch, kind)(_size(size), **opts)
    if kind == "full":
        return torch.full(_size(size), kw["fill_value"], **opts)
    if kind == "randint":
        opts["dtype"] = dtype if dtype is not None else torch.int64
        return torch.randint(to_int(kw["low"]), to_int(kw["high"]), _size(size), **opts)
    if kind == "randperm":
        opts["dtype"] = dtype if dtype is not None else torch.int64
        return torch.randperm(to_int(kw["n"]), **opts)
    if kind == "eye":
        m = kw.get("m")
        return torch.eye(to_int(kw["n"]), to_int(m) if m is not None else to_int(kw["n"]), **opts)
    if kind == "linspace":
        return torch.linspace(kw["start"], kw["end"], to_int(kw["steps"]), **opts)
    if kind == "logspace":
        return torch.logspace(kw["start"], kw["end"], to_int(kw["steps"]), kw.get("base", 10.0), **opts)
    if kind.endswith("_like"):
        src = kw["input"]
        base = kind[:-5]
        if base == "full":
            return torch.full_like(src, kw["fill_value"], **opts)
        if base == "randint":
            opts["dtype"] = dtype if dtype is not None else src.dtype
            return torch.randint_like(src, to_int(kw["low"]), to_int(kw["high"]), **opts)
        return getattr(torch, kind)(src, **opts)
    raise ValueError(f"unknown creation op {kind}")


def arange(start, end, step=1, dtype=None, device=None, requires_grad=False, integer=False):
    """R's inclusive ``torch_arange(start, end, step)``.

    ``integer=True`` (all of start/end/step were R integers) gives int64.
    """
    if step == 0:
        raise ValueError("torch_arange(): step must be nonzero")
    sign = 1 if step > 0 else -1
    if dtype is None:
        dtype = torch.int64 if integer else torch.get_default_dtype()
    if not dtype.is_floating_point and not dtype.is_complex:
        start, end, step = to_int(start), to_int(end), to_int(step)
        stop = end + sign
    else:
        stop = end + sign * abs(step) * 1e-6
    return torch.arange(start, stop, step, dtype=dtype, device=device, requires_grad=bool(requires_grad))


def manual_seed(seed):
    """Seed torch from an R double or string (avoids int32 corruption)."""
    s = int(float(seed)) if not isinstance(seed, str) else int(seed)
    torch.manual_seed(s)
    return None


def set_grad(mode):
    """Set autograd mode; returns the previous mode."""
    prev = torch.is_grad_enabled()
    torch.set_grad_enabled(bool(mode))
    return prev


# ---------------------------------------------------------------------------
# `[` indexing (tokens are built by the R method from its unevaluated arguments)
#   ["full"]  ["ell"]  ["new"]  ["int", i]  ["slice", start, end, step]
#   ["vec", values]  ["bool", logical values]  ["tensor", t]
# ---------------------------------------------------------------------------

def _consumes(tok):
    kind = tok[0]
    if kind in ("new", "ell"):
        return 0
    if kind == "tensor" and tok[1].dtype == torch.bool:
        return max(tok[1].dim(), 1)
    return 1


def _expand(x, toks):
    used = sum(_consumes(t) for t in toks)
    n_ell = sum(1 for t in toks if t[0] == "ell")
    if n_ell > 1:
        raise ValueError("Only one ellipsis (`..`) is allowed in an index")
    if used > x.dim():
        raise IndexError(f"too many indices for a tensor of dimension {x.dim()} (got {used})")
    out = []
    for t in toks:
        if t[0] == "ell":
            out.extend([["full"]] * (x.dim() - used))
        else:
            out.append(t)
    return out


def _slice(tok):
    _, start, end, step = tok
    start = to_int(start) if start is not None else None
    end = to_int(end) if end is not None else None
    step = to_int(step) if step is not None else None
    if start is not None:
        if start == 0:
            raise ValueError("Indexing starts at 1 but found a 0.")
        start = start - 1 if start > 0 else start
    if end is not None:
        if end == 0:
            raise ValueError("Indexing starts at 1 but found a 0.")
        if end < 0:
            end = end + 1
            if end == 0:
                end = None
    if step is not None and step <= 0:
        raise ValueError("Slice steps must be positive")
    return slice(start, end, step)


def _int(i):
    i = to_int(i)
    if not isinstance(i, int):
        raise TypeError("scalar index must be a number")
    if i == 0:
        raise ValueError("Indexing starts at 1 but found a 0.")
    return i - 1 if i > 0 else i


def _vec(values, size, device):
    if isinstance(values, Tensor):
        t = values.to(device)
        if t.dtype == torch.bool:
            return t.nonzero().flatten()
        t = t.long()
        _check_index_tensor(t)
        return torch.where(t > 0, t - 1, t + size)
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        values = [values]
    out = []
    for v in values:
        v = to_int(v)
        if v == 0:
            raise ValueError("Indexing starts at 1 but found a 0.")
        out.append(v - 1 if v > 0 else size + v)
    return torch.tensor(out, dtype=torch.int64, device=device)


def _boolvec(values, device):
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        values = [values]
    return torch.tensor(values, dtype=torch.bool, device=device).nonzero().flatten()


def _whole_mask(x, toks):
    return len(toks) == 1 and toks[0][0] == "tensor" and toks[0][1].dtype == torch.bool and toks[0][1].dim() > 1


def getitem(x, toks, drop=True):
    if _whole_mask(x, toks):
        return x[toks[0][1]]
    toks = _expand(x, toks)
    key = []
    post = []  # (position in result, kind, values)
    pos = 0
    in_dim = 0
    for t in toks:
        kind = t[0]
        if kind == "full":
            key.append(slice(None))
            pos += 1
            in_dim += 1
        elif kind == "new":
            key.append(None)
            pos += 1
        elif kind == "int":
            i = _int(t[1])
            if drop:
                key.append(i)
            else:
                key.append(slice(i, i + 1 if i != -1 else None))
                pos += 1
            in_dim += 1
        elif kind == "slice":
            key.append(_slice(t))
            pos += 1
            in_dim += 1
        elif kind in ("vec", "bool", "tensor"):
            size = x.shape[in_dim]
            if kind == "bool":
                idx = _boolvec(t[1], x.device)
            elif kind == "tensor" and t[1].dim() == 0 and t[1].dtype != torch.bool:
                # a scalar tensor behaves like a scalar index
                i = _int(int(t[1].item()))
                key.append(i if drop else slice(i, i + 1 if i != -1 else None))
                pos += 0 if drop else 1
                in_dim += 1
                continue
            else:
                idx = _vec(t[1], size, x.device)
            key.append(slice(None))
            post.append((pos, idx))
            pos += 1
            in_dim += 1
        else:
            raise ValueError(f"unknown index token {kind}")
    out = x[tuple(key)]
    for p, idx in post:
        out = out.index_select(p, idx)
    return out


def _value_like(x, value):
    if isinstance(value, Tensor):
        return value.to(device=x.device, dtype=x.dtype) if value.dtype != x.dtype or value.device != x.device else value
    if isinstance(value, (np.ndarray, list, tuple)):
        return from_r(value).to(device=x.device, dtype=x.dtype)
    return value


def setitem(x, toks, value):
    """In-place ``x[...] <- value`` with R semantics; returns ``x``."""
    if _whole_mask(x, toks):
        x[toks[0][1]] = _value_like(x, value)
        return x
    toks = _expand(x, toks)
    value = _value_like(x, value)
    if all(t[0] in ("full", "int", "slice", "new") for t in toks):
        key = []
        for t in toks:
            kind = t[0]
            if kind == "full":
                key.append(slice(None))
            elif kind == "new":
                key.append(None)
            elif kind == "int":
                key.append(_int(t[1]))
            else:
                key.append(_slice(t))
        x[tuple(key)] = value
        return x
    # general case: a grid (R semantics) built from one index vector per dim
    idxs, kept, grid = [], [], []
    in_dim = 0
    for t in toks:
        kind = t[0]
        if kind == "new":
            continue
        size = x.shape[in_dim]
        if kind == "full":
            idx = torch.arange(size, device=x.device)
        elif kind == "slice":
            idx = torch.arange(size, device=x.device)[_slice(t)]
        elif kind == "int":
            idx = torch.tensor([_int(t[1]) % size], device=x.device)
        elif kind == "bool":
            idx = _boolvec(t[1], x.device)
        else:
            idx = _vec(t[1], size, x.device)
        idxs.append(idx)
        grid.append(idx.numel())
        if kind != "int":
            kept.append(idx.numel())
        in_dim += 1
    for d in range(in_dim, x.dim()):
        idx = torch.arange(x.shape[d], device=x.device)
        idxs.append(idx)
        grid.append(idx.numel())
        kept.append(idx.numel())
    n = len(idxs)
    ix = [i.reshape([-1 if k == j else 1 for k in range(n)]) for j, i in enumerate(idxs)]
    if isinstance(value, Tensor):
        value = torch.broadcast_to(value, kept).reshape(grid)
    x[tuple(ix)] = value
    return x
