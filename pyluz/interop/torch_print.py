"""Text layouts of R torch's ``print()`` / ``str()`` for tensors.

R torch prints a tensor with libtorch's C++ stream output: one value per line
for 1-d tensors, a matrix for 2-d ones (split into "Columns i to j" blocks
beyond the line width), ``(i,j,.,.) =`` slices (1-based) beyond, a shared
``1e-05 *`` scale when the values call for one, then ``[ CPUFloatType{2,3} ]``.
PyTorch has no binding for that printer, so :func:`format_tensor` reimplements
its rules (format choice, widths, precision 4).
Serves ``rpkg/R/torch-tensor.R``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["format_tensor", "type_string", "str_tensor", "grad_suffix"]

_TYPE_NAMES = {
    torch.float32: "Float",
    torch.float64: "Double",
    torch.float16: "Half",
    torch.bfloat16: "BFloat16",
    torch.int64: "Long",
    torch.int32: "Int",
    torch.int16: "Short",
    torch.int8: "Char",
    torch.uint8: "Byte",
    torch.bool: "Bool",
    torch.complex64: "ComplexFloat",
    torch.complex128: "ComplexDouble",
}


def dtype_name(dtype):
    """R torch's short dtype name: Float, Long, Bool, ..."""
    return _TYPE_NAMES.get(dtype, str(dtype).replace("torch.", "").capitalize())


def type_string(t):
    """libtorch's ``toString()``: backend + scalar type, e.g. ``CPUFloatType``."""
    backend = t.device.type.upper()
    return f"{backend}{dtype_name(t.dtype)}Type"


def _print_format(values):
    """(scale, width, format) for a flat list of doubles, as libtorch chooses them."""
    if not values:
        return 1.0, 0, "g"
    finite = [v for v in values if math.isfinite(v)]
    int_mode = all(v == math.ceil(v) for v in finite)
    exp_min = exp_max = 1.0
    if finite:
        exp_min = abs(finite[0])
        exp_max = abs(finite[0])
        for v in finite:
            z = abs(v)
            if z < exp_min:
                exp_min = z
            if v > exp_max:  # libtorch compares the signed value here
                exp_max = z
        exp_min = math.floor(math.log10(exp_min)) + 1 if exp_min != 0 else 1
        exp_max = math.floor(math.log10(exp_max)) + 1 if exp_max != 0 else 1
    scale = 1.0
    if int_mode:
        if exp_max > 9:
            return scale, 11, "e"
        return scale, int(exp_max) + 1, "g"
    if exp_max - exp_min > 4:
        width = 11
        if abs(exp_max) > 99 or abs(exp_min) > 99:
            width += 1
        return scale, width, "e"
    if exp_max > 5 or exp_max < 0:
        return 10.0 ** (exp_max - 1), 7, "f"
    return scale, 7 if exp_max == 0 else int(exp_max) + 6, "f"


def _num(v, fmt):
    if fmt == "f":
        s = f"{v:.4f}"
    elif fmt == "e":
        s = f"{v:.4e}"
    else:
        s = f"{v:g}"
    return s


def _cell(v, width, fmt):
    return _num(v, fmt).rjust(width)


def _scale_line(scale):
    return f"{scale:g} *"


def _matrix_text(m, linesize, indent):
    """libtorch's ``__printMatrix`` for a 2-d list of doubles, as one string.

    Kept byte-for-byte, quirks included: a "Columns i to j" header runs into the
    first row, and with a scale every row but the first gets one extra space.
    """
    flat = [v for row in m for v in row]
    scale, width, fmt = _print_format(flat)
    n_rows, n_cols = len(m), len(m[0])
    per_line = max((linesize - indent) // (width + 1), 1)
    pad = " " * indent
    out = [pad]
    first = 0
    while first < n_cols:
        last = min(first + per_line, n_cols) - 1
        if per_line < n_cols:
            if first != 0:
                out.append("\n")
            out.append(f"Columns {first + 1} to {last + 1}{pad}")
        if scale != 1:
            out.append(_scale_line(scale) + "\n" + pad)
        for r in range(n_rows):
            out.append(" ".join(_cell(m[r][c] / scale, width, fmt) for c in range(first, last + 1)))
            out.append("\n")
            if r != n_rows - 1:
                out.append(pad + (" " if scale != 1 else ""))
        first = last + 1
    return "".join(out)


def format_tensor(t, n=30, linesize=80):
    """R torch's ``print()`` text of a tensor (without the ``torch_tensor`` header line)."""
    shape = ",".join(str(d) for d in t.shape)
    footer = f"[ {type_string(t)}{{{shape}}} ]"
    if t.is_complex() or t.numel() == 0:
        body = ""
    elif t.dim() == 0:
        body = _num(float(t.detach().cpu().double()), "g") + "\n"
    else:
        d = t.detach().cpu().to(torch.float64)
        if d.dim() == 1:
            vals = d.tolist()
            scale, width, fmt = _print_format(vals)
            body = (_scale_line(scale) + "\n" if scale != 1 else "") + "".join(
                _cell(v / scale, width, fmt) + "\n" for v in vals
            )
        elif d.dim() == 2:
            body = _matrix_text(d.tolist(), linesize, 0)
        else:
            parts = []
            for idx in _counters(list(d.shape[:-2])):
                head = "(" + ",".join(str(i + 1) for i in idx) + ",.,.) = \n"
                parts.append(head + _matrix_text(d[tuple(idx)].tolist(), linesize, 1))
            body = "\n".join(parts)
    lines = (body + footer).split("\n")
    if n is not None and n > 1 and len(lines) > n:
        lines = lines[:n] + ["... [the output was truncated (use n=-1 to disable)]", lines[-1]]
    return "\n".join(lines) + grad_suffix(t)


def _counters(lead):
    """Indices over the leading dims, first dim fastest (libtorch's slice order)."""
    idx = [0] * len(lead)
    total = 1
    for s in lead:
        total *= s
    for _ in range(total):
        yield list(idx)
        for i in range(len(lead)):
            idx[i] += 1
            if idx[i] < lead[i]:
                break
            idx[i] = 0


def grad_suffix(t):
    """``[ grad_fn = <AddBackward0> ]`` or ``[ requires_grad = TRUE ]`` (or nothing)."""
    if t.grad_fn is not None:
        return f"[ grad_fn = <{type(t.grad_fn).__name__}> ]"
    if t.requires_grad:
        return "[ requires_grad = TRUE ]"
    return ""


def str_tensor(t):
    """R torch's ``str()`` text: ``Float [1:2, 1:3]``."""
    return f"{dtype_name(t.dtype)} [" + ", ".join(f"1:{d}" for d in t.shape) + "]"
