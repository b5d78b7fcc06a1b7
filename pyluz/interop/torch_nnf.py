"""Functional ops (``nnf_*``) with R torch's conventions.

* class targets (cross-entropy, NLL, one-hot) are 1-based: the adapters
  subtract 1 (a target of 0 is an error); ``ignore_index`` shifts with them;
* binary losses accept integer/logical 0/1 targets;
* size-like arguments arrive as R doubles and are made ints, ``dim`` is 1-based.

:class:`Functional` is an ``nnf_*`` function as a plain Python callable (what the
R package hands to the engine for ``loss = nnf_cross_entropy``).
Serves ``rpkg/R/torch-nnf.R``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .torch_indices import index, to_0_based, to_int
from .torch_nn_args import INT_ARGS, convert_kwargs

__all__ = ["nnf", "Functional", "shift_class_target", "class_loss", "py_ignore_index", "float_target"]


def shift_class_target(target, input=None):
    """1-based class targets (R) -> 0-based Long targets (PyTorch): one subtraction, no device read.

    Float targets with the shape of ``input`` are class probabilities and pass through unchanged;
    float targets with one dim less are class indices. A negative ``ignore_index`` shifts with the
    targets (``py_ignore_index``), so ignored entries stay ignored.
    """
    if not isinstance(target, torch.Tensor):
        target = torch.as_tensor(target)
    if target.is_floating_point():
        if input is not None and target.dim() == input.dim():
            return target
        target = target.long()
    elif target.dtype != torch.long:
        target = target.long()
    return target - 1


def py_ignore_index(ignore_index):
    ignore_index = to_int(ignore_index)
    if ignore_index is None:
        ignore_index = -100
    if ignore_index == 0:
        raise ValueError("ignore_index is a 1-based class index; 0 is not valid")
    return ignore_index - 1  # targets are shifted by -1, so is the index that ignores them


def class_loss(loss, input, target, **kwargs):
    """Call a PyTorch class-index loss with R's 1-based targets; out-of-range targets get R's message.

    The range is checked by PyTorch itself (no per-batch device read here).
    """
    try:
        return loss(input, shift_class_target(target, input), **kwargs)
    except IndexError as e:  # "Target -1 is out of bounds." for a 0 target (or C + 1)
        raise ValueError(
            f"Class targets are 1-based in R (1..C); got a target out of range ({e}). " "Add 1 to 0-based labels."
        ) from e


def float_target(input, target):
    if isinstance(target, torch.Tensor) and not target.is_floating_point():
        return target.to(input.dtype)
    return target


# ---------------------------------------------------------------------------
# functional
# ---------------------------------------------------------------------------


def _ce(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    return class_loss(
        F.cross_entropy,
        input,
        target,
        weight=weight,
        ignore_index=py_ignore_index(ignore_index),
        reduction=reduction,
        label_smoothing=float(label_smoothing),
    )


def _nll(input, target, weight=None, ignore_index=-100, reduction="mean"):
    return class_loss(
        F.nll_loss, input, target, weight=weight, ignore_index=py_ignore_index(ignore_index), reduction=reduction
    )


def _one_hot(tensor, num_classes=-1):
    shifted = shift_class_target(tensor)
    if shifted.numel() and bool((shifted < 0).any()):
        raise ValueError("Class values are 1-based in R (1..C), but one is 0 or negative.")
    return F.one_hot(shifted, to_int(num_classes))


def _bce(input, target, weight=None, reduction="mean"):
    return F.binary_cross_entropy(input, float_target(input, target), weight=weight, reduction=reduction)


def _bce_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    return F.binary_cross_entropy_with_logits(
        input, float_target(input, target), weight=weight, reduction=reduction, pos_weight=pos_weight
    )


def feature_dropout(input, p=0.5, training=True, inplace=False):
    """R torch's dropout2d: channel dropout of any input, as libtorch's ``feature_dropout``
    (PyTorch's ``F.dropout2d`` warns on a 2-D input and then drops whole rows instead)."""
    fn = torch.feature_dropout_ if inplace else torch.feature_dropout
    return fn(input, float(p), bool(training))


def _pad(input, pad, mode="constant", value=None):
    return F.pad(input, to_int(pad if isinstance(pad, (list, tuple)) else [pad]), mode=mode, value=value)


def _embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False, sparse=False):
    if padding_idx is not None:
        padding_idx = to_0_based(padding_idx)
    return F.embedding(
        index(input), weight, padding_idx, max_norm, float(norm_type), bool(scale_grad_by_freq), bool(sparse)
    )


_NNF = {
    "cross_entropy": _ce,
    "nll_loss": _nll,
    "one_hot": _one_hot,
    "binary_cross_entropy": _bce,
    "binary_cross_entropy_with_logits": _bce_logits,
    "pad": _pad,
    "dropout2d": feature_dropout,
    "embedding": _embedding,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


def nnf(name, input, **kwargs):
    """``torch.nn.functional.<name>(input, **kwargs)`` with R conventions."""
    fn = _NNF.get(name) or getattr(F, name)
    return fn(input, **convert_kwargs(kwargs, ints=INT_ARGS | {"num_classes"}))


class Functional:
    """A functional op with R conventions as a plain Python callable (used for
    R loss functions such as ``nnf_cross_entropy`` passed to the engine)."""

    def __init__(self, name):
        self.name = name
        self.__name__ = "nnf_" + name

    _POSITIONAL = {"triplet_margin_loss": ("positive", "negative")}

    def __call__(self, input, *args, **kwargs):
        if args:
            names = self._POSITIONAL.get(self.name, ("target",))
            if len(args) > len(names):
                raise TypeError(f"nnf_{self.name}(): pass options by name")
            kwargs = dict(kwargs)
            kwargs.update(zip(names, args))
        return nnf(self.name, input, **kwargs)

    def __repr__(self):
        return f"<R functional nnf_{self.name}>"
