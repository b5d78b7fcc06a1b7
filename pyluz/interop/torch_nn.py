"""Layers (``nn_*``) with R torch's conventions, and module helpers for R.

* loss modules take 1-based class targets (see :mod:`.torch_nnf`);
* ``nn_embedding`` indices are 1-based;
* constructor arguments are converted by :mod:`.torch_nn_args`.

Serves ``rpkg/R/torch-nn.R``.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

import torch
import torch.nn as nn

from .torch_indices import index, to_0_based, to_int
from .torch_nn_args import convert_kwargs
from .torch_nnf import class_loss, feature_dropout, float_target, py_ignore_index
from .torch_print import str_tensor

__all__ = [
    "new_layer",
    "layer_class",
    "sequential",
    "module_list",
    "module_dict",
    "named",
    "module_device",
    "n_parameters",
    "summary",
    "RCrossEntropyLoss",
    "RNLLLoss",
    "RBCELoss",
    "RBCEWithLogitsLoss",
    "REmbedding",
    "RDropout2d",
]


class RCrossEntropyLoss(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss`` taking 1-based class targets (R convention)."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(
            weight=weight,
            ignore_index=py_ignore_index(ignore_index),
            reduction=reduction,
            label_smoothing=float(label_smoothing),
        )

    def forward(self, input, target):
        return class_loss(super().forward, input, target)


class RNLLLoss(nn.NLLLoss):
    """``nn.NLLLoss`` taking 1-based class targets (R convention)."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(weight=weight, ignore_index=py_ignore_index(ignore_index), reduction=reduction)

    def forward(self, input, target):
        return class_loss(super().forward, input, target)


class RBCELoss(nn.BCELoss):
    """``nn.BCELoss`` that accepts integer/logical 0/1 targets."""

    def forward(self, input, target):
        return super().forward(input, float_target(input, target))


class RBCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """``nn.BCEWithLogitsLoss`` that accepts integer/logical 0/1 targets."""

    def forward(self, input, target):
        return super().forward(input, float_target(input, target))


class REmbedding(nn.Embedding):
    """``nn.Embedding`` with 1-based indices (R torch's ``nn_embedding``)."""

    def __init__(
        self,
        num_embeddings,
        embedding_dim,
        padding_idx=None,
        max_norm=None,
        norm_type=2.0,
        scale_grad_by_freq=False,
        sparse=False,
        _weight=None,
    ):
        if padding_idx is not None:
            padding_idx = to_0_based(padding_idx)
        super().__init__(
            to_int(num_embeddings),
            to_int(embedding_dim),
            padding_idx=padding_idx,
            max_norm=max_norm,
            norm_type=float(norm_type),
            scale_grad_by_freq=bool(scale_grad_by_freq),
            sparse=bool(sparse),
            _weight=_weight,
        )

    def forward(self, input):
        return super().forward(index(input))


class RDropout2d(nn.Dropout2d):
    """``nn.Dropout2d`` as R torch's ``nn_dropout2d``: channel dropout of any input (see
    :func:`.torch_nnf.feature_dropout`)."""

    def forward(self, input):
        return feature_dropout(input, self.p, self.training, self.inplace)


_LAYERS = {
    "Dropout2d": RDropout2d,
    "CrossEntropyLoss": RCrossEntropyLoss,
    "NLLLoss": RNLLLoss,
    "BCELoss": RBCELoss,
    "BCEWithLogitsLoss": RBCEWithLogitsLoss,
    "Embedding": REmbedding,
}


def layer_class(name):
    cls = _LAYERS.get(name)
    return cls if cls is not None else getattr(nn, name)


def new_layer(name, **kwargs):
    """Build ``torch.nn.<name>`` (or its R-convention adapter) from R arguments."""
    if name == "Embedding" and "_weight" in kwargs and kwargs["_weight"] is None:
        kwargs.pop("_weight")
    return layer_class(name)(**convert_kwargs(kwargs))


def named(items, names):
    return OrderedDict(zip(names, items))


def sequential(modules, names=None):
    if names:
        return nn.Sequential(OrderedDict(zip(names, modules)))
    return nn.Sequential(*modules)


def module_dict(modules, names):
    return nn.ModuleDict(OrderedDict(zip(names, modules)))


def module_list(modules):
    return nn.ModuleList(list(modules))


def named_members(module, what):
    """``model$parameters`` & co: dict of ``named_<what>()``."""
    return dict(getattr(module, "named_" + what)())


def module_device(module):
    """Device of a module's first parameter (or buffer); cpu when it has none."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        return t.device
    return torch.device("cpu")


def summary(module):
    """What R torch's module print shows: total parameter count, and per direct child,
    parameter and buffer (``str()`` of tensors)."""
    return {
        "n": float(n_parameters(module)),
        "children": {k: float(n_parameters(m)) for k, m in module.named_children()},
        "parameters": {k: str_tensor(p) for k, p in module.named_parameters(recurse=False)},
        "buffers": {k: str_tensor(b) for k, b in module.named_buffers(recurse=False)},
    }


def n_parameters(module):
    return float(sum(p.numel() for p in module.parameters()))
