"""R's ``[`` and ``[<-`` on tensors: 1-based, inclusive ranges, R's grid semantics.

The R method turns its unevaluated arguments into tokens:
``["full"]  ["ell"]  ["new"]  ["int", i]  ["slice", start, end, step]
["vec", values]  ["bool", logical values]  ["tensor", t]``.
Serves ``rpkg/R/torch-indexing.R``.
"""

from __future__ import annotations

import numpy as np
import torch

from .torch_indices import index_tensor, to_0_based, to_int
from .torch_tensor import from_r

__all__ = ["getitem", "setitem"]

Tensor = torch.Tensor


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
    """R's inclusive ``start:end:step`` -> a Python slice (the end is exclusive there)."""
    _, start, end, step = tok
    step = to_int(step) if step is not None else None
    if start is not None:
        start = to_0_based(start)
    if end is not None:
        end = to_0_based(end) + 1  # inclusive 1-based end == exclusive 0-based end
        if end == 0:  # -1 (the last element): up to the end
            end = None
    if step is not None and step <= 0:
        raise ValueError("Slice steps must be positive")
    return slice(start, end, step)


def _int(i):
    return to_0_based(i)


def _vec(values, size, device):
    if isinstance(values, Tensor):
        t = values.to(device)
        if t.dtype == torch.bool:
            return t.nonzero().flatten()
        return index_tensor(t, size=size)
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        values = [values]
    return torch.tensor([to_0_based(v, size=size) for v in values], dtype=torch.int64, device=device)


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
