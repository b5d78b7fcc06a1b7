"""R values <-> tensors, and tensor creation, with R torch's rules.

* R doubles become float32 tensors, R integers int64, logicals bool;
* an R array keeps its ``[i, j]`` indexing (reticulate hands over F-ordered numpy);
* ``as_array()`` gives int64 back as R integers (doubles when they don't fit);
* ``torch_arange()``'s end is inclusive.

Arguments arrive as reticulate delivers them (R doubles as Python floats, R
vectors as lists, R arrays as numpy arrays); one R -> Python crossing per call.
Serves ``rpkg/R/torch-tensor.R``.
"""

from __future__ import annotations

import numpy as np
import torch

from .torch_indices import to_int

__all__ = [
    "from_r",
    "as_tensor_arg",
    "to_r",
    "shape",
    "create",
    "arange",
    "manual_seed",
    "set_grad",
    "as_dtype",
    "save",
    "load",
    "INT32_MAX",
]

INT32_MAX = 2**31 - 1
_INT32_MAX = INT32_MAX
Tensor = torch.Tensor

# dtype names R code may give as strings (`x$to(dtype = "long")`)
_DTYPE_NAMES = {
    "float": torch.float32,
    "float32": torch.float32,
    "double": torch.float64,
    "float64": torch.float64,
    "half": torch.float16,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "long": torch.int64,
    "int64": torch.int64,
    "int": torch.int32,
    "int32": torch.int32,
    "short": torch.int16,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
    "cfloat": torch.complex64,
    "cdouble": torch.complex128,
}


def as_dtype(dtype):
    """A dtype, or R's name of one (``"long"``, ``"float32"``, ...) -> ``torch.dtype``."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        d = _DTYPE_NAMES.get(dtype.lower().removeprefix("torch_"))
        if d is not None:
            return d
        raise ValueError(f'unknown dtype {dtype!r}; use e.g. torch_float(), torch_long() or "long"')
    raise TypeError(f"`dtype` must be a torch dtype or its name, got {type(dtype).__name__}")


def save(obj, path):
    """``torch_save()``: one file written by ``torch.save``."""
    torch.save(obj, path)


def load(path, device=None):
    """``torch_load()``: ``torch.load`` with safe (weights-only) unpickling."""
    return torch.load(path, map_location=device, weights_only=True)


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
    dtype = as_dtype(dtype)
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
# creation
# ---------------------------------------------------------------------------


def _size(v):
    v = to_int(v)
    if isinstance(v, int):
        return [v]
    return list(v)


def create(kind, size=None, dtype=None, device=None, requires_grad=False, **kw):
    """torch_zeros/ones/empty/randn/rand/full/randint/randperm/eye/linspace."""
    dtype = as_dtype(dtype)
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
    dtype = as_dtype(dtype)
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
