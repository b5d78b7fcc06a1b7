"""R torch's "indices start at 1" rule, in one place.

R torch counts dimensions, positions and classes from 1; negative values count
from the end as in Python; ``0`` is an error. Everything in the R-torch layer
that takes or returns an index goes through :func:`to_0_based` (scalars),
:func:`index_tensor` (integer tensors) or :func:`to_1_based` (results).
R doubles arrive as Python floats, so :func:`to_int` makes integral ones ints.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["to_int", "to_0_based", "to_1_based", "index_tensor", "dim", "index", "ZERO_INDEX", "ZERO_DIM"]

ZERO_INDEX = "Indexing starts at 1 but found a 0."
ZERO_DIM = "Dimension is 1-based, but found 0."


def to_int(v):
    """Integral floats (R doubles) -> ints, recursively in lists/tuples/arrays."""
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"expected an integer value, got {v}")
        return int(v)
    if isinstance(v, (list, tuple)):
        return [to_int(e) for e in v]
    if isinstance(v, np.ndarray):
        return [to_int(e) for e in v.tolist()]
    return v


def to_0_based(i, size=None, zero_message=ZERO_INDEX):
    """One R index (1-based) -> 0-based: ``i - 1`` for positive ``i``; negative ``i``
    stays (counts from the end), or becomes ``size + i`` when ``size`` is given; 0 is an error.

    >>> to_0_based(1), to_0_based(-1), to_0_based(-1, size=5)
    (0, -1, 4)
    """
    i = to_int(i)
    if not isinstance(i, int) or isinstance(i, bool):
        raise TypeError(f"an index must be a whole number, got {i!r}")
    if i == 0:
        raise ValueError(zero_message)
    if i > 0:
        return i - 1
    return size + i if size is not None else i


def _recording():
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def index_tensor(t, size=None):
    """The same rule for an integer tensor of R indices (bool masks pass through).

    Zeros are checked only on CPU (a device read per call would sync accelerators) and not
    while torch.export or torch.jit.trace records the model (the check reads the data, which a
    program can't: export would fail on it, tracing would warn).
    """
    if t.dtype == torch.bool:
        return t
    if t.dtype != torch.int64:
        t = t.long()
    if t.device.type == "cpu" and not _recording() and t.numel() and bool((t == 0).any()):
        raise ValueError(ZERO_INDEX)
    return torch.where(t > 0, t - 1, t if size is None else t + size)


def to_1_based(x):
    """0-based indices (an int, or a tensor returned by an op) -> R's 1-based; other values pass."""
    if isinstance(x, (torch.Tensor, int)) and not isinstance(x, bool):
        return x + 1
    return x


def dim(v):
    """1-based R dimension(s) -> 0-based (lists element-wise; tensors/strings/None pass)."""
    if v is None or isinstance(v, (bool, str, torch.Tensor)):
        return v
    if isinstance(v, (list, tuple, np.ndarray)):
        return [dim(e) for e in (v.tolist() if isinstance(v, np.ndarray) else v)]
    if isinstance(v, float) and not v.is_integer():
        raise ValueError(f"Dimension must be an integer, got {v}")
    return to_0_based(v, zero_message=ZERO_DIM)


def index(v):
    """1-based R index (scalar, vector or integer tensor) -> 0-based."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, (list, tuple, np.ndarray)):
        v = torch.as_tensor(np.asarray(v, dtype=np.int64))
    if isinstance(v, torch.Tensor):
        return index_tensor(v)
    if isinstance(v, float) and not v.is_integer():
        raise ValueError(f"Index must be an integer, got {v}")
    return to_0_based(v)
