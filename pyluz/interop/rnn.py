"""Layers, losses, functional ops, optimizers and schedulers with R-torch conventions.

* constructor arguments arrive from R as doubles: size-like ones are made ints,
  dim-like ones (``dim``, ``start_dim``, ``end_dim``) are shifted from 1-based;
* class targets (cross-entropy, NLL, one-hot) are 1-based: the adapters
  subtract 1 (a target of 0 is an error);
* embedding indices are 1-based (``nn_embedding``).

Optimizer and scheduler *factories* (:class:`OptimFactory`,
:class:`SchedulerFactory`) are what the R package hands to the engine for
``setup(optimizer = optim_adam)``: plain Python callables ``f(params, **kw)``
with the torch class in ``.cls``; no R code runs when the engine calls them.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .guard import guard
from .rops import dim, index, to_int

__all__ = [
    "new_layer", "nnf", "OptimFactory", "SchedulerFactory", "optim", "scheduler",
    "RCrossEntropyLoss", "RNLLLoss", "RBCELoss", "RBCEWithLogitsLoss", "REmbedding",
    "shift_class_target", "sequential", "module_list", "named", "coerce_init",
]

INT_ARGS = frozenset("""
in_features out_features in_channels out_channels kernel_size stride padding dilation groups
num_features num_embeddings embedding_dim num_layers hidden_size input_size output_size
normalized_shape num_heads embed_dim num_classes size upscale_factor downscale_factor num_groups
num_channels nhead d_model dim_feedforward kdim vdim proj_size num_parameters output_padding
in1_features in2_features sizes unflattened_size scale_factor_int
""".split())
DIM_ARGS = frozenset(["dim", "start_dim", "end_dim"])
FLOAT_ARGS = frozenset("""
p eps momentum negative_slope alpha beta lambd margin label_smoothing value max_norm norm_type
threshold min_val max_val delta lr weight_decay init lower upper scale_factor
""".split())


def _convert_kwargs(kwargs, ints=INT_ARGS, dims=DIM_ARGS):
    out = {}
    for k, v in kwargs.items():
        if k in dims:
            v = dim(v)
        elif k in ints and not isinstance(v, str):
            v = to_int(v)
        out[k] = v
    return out


def coerce_init(args, kwargs):
    """Best-effort conversion of R arguments for a Python base ``__init__``:
    integral doubles become ints except for known float-valued names."""
    args = [to_int(a) if isinstance(a, float) and a.is_integer() else a for a in args]
    kw = {}
    for k, v in kwargs.items():
        if k in DIM_ARGS:
            v = dim(v)
        elif k not in FLOAT_ARGS and isinstance(v, (float, list)):
            try:
                v = to_int(v)
            except (ValueError, TypeError):
                pass
        kw[k] = v
    return args, kw


# ---------------------------------------------------------------------------
# class targets
# ---------------------------------------------------------------------------

def shift_class_target(target, input=None):
    """1-based class targets (R) -> 0-based Long targets (PyTorch): one subtraction, no device read.

    Float targets with the shape of ``input`` are class probabilities and pass through unchanged;
    float targets with one dim less are class indices. A negative ``ignore_index`` shifts with the
    targets (``_py_ignore``), so ignored entries stay ignored.
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


def _py_ignore(ignore_index):
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
        raise ValueError(f"Class targets are 1-based in R (1..C); got a target out of range ({e}). "
                         "Add 1 to 0-based labels.") from e


class RCrossEntropyLoss(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss`` taking 1-based class targets (R convention)."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(weight=weight, ignore_index=_py_ignore(ignore_index),
                         reduction=reduction, label_smoothing=float(label_smoothing))

    def forward(self, input, target):
        return class_loss(super().forward, input, target)


class RNLLLoss(nn.NLLLoss):
    """``nn.NLLLoss`` taking 1-based class targets (R convention)."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(weight=weight, ignore_index=_py_ignore(ignore_index), reduction=reduction)

    def forward(self, input, target):
        return class_loss(super().forward, input, target)


def _float_target(input, target):
    if isinstance(target, torch.Tensor) and not target.is_floating_point():
        return target.to(input.dtype)
    return target


class RBCELoss(nn.BCELoss):
    """``nn.BCELoss`` that accepts integer/logical 0/1 targets."""

    def forward(self, input, target):
        return super().forward(input, _float_target(input, target))


class RBCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """``nn.BCEWithLogitsLoss`` that accepts integer/logical 0/1 targets."""

    def forward(self, input, target):
        return super().forward(input, _float_target(input, target))


class REmbedding(nn.Embedding):
    """``nn.Embedding`` with 1-based indices (R torch's ``nn_embedding``)."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None,
                 norm_type=2.0, scale_grad_by_freq=False, sparse=False, _weight=None):
        if padding_idx is not None:
            padding_idx = to_int(padding_idx)
            if padding_idx > 0:
                padding_idx -= 1
        super().__init__(to_int(num_embeddings), to_int(embedding_dim), padding_idx=padding_idx,
                         max_norm=max_norm, norm_type=float(norm_type),
                         scale_grad_by_freq=bool(scale_grad_by_freq), sparse=bool(sparse),
                         _weight=_weight)

    def forward(self, input):
        return super().forward(index(input))


_LAYERS = {
    "CrossEntropyLoss": RCrossEntropyLoss, "NLLLoss": RNLLLoss, "BCELoss": RBCELoss,
    "BCEWithLogitsLoss": RBCEWithLogitsLoss, "Embedding": REmbedding,
}


def layer_class(name):
    cls = _LAYERS.get(name)
    return cls if cls is not None else getattr(nn, name)


def new_layer(name, **kwargs):
    """Build ``torch.nn.<name>`` (or its R-convention adapter) from R arguments."""
    if name == "Embedding" and "_weight" in kwargs and kwargs["_weight"] is None:
        kwargs.pop("_weight")
    return layer_class(name)(**_convert_kwargs(kwargs))


def named(items, names):
    return OrderedDict(zip(names, items))


def sequential(modules, names=None):
    if names:
        return nn.Sequential(OrderedDict(zip(names, modules)))
    return nn.Sequential(*modules)


def module_list(modules):
    return nn.ModuleList(list(modules))


# ---------------------------------------------------------------------------
# functional
# ---------------------------------------------------------------------------

def _ce(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    return class_loss(F.cross_entropy, input, target, weight=weight, ignore_index=_py_ignore(ignore_index),
                      reduction=reduction, label_smoothing=float(label_smoothing))


def _nll(input, target, weight=None, ignore_index=-100, reduction="mean"):
    return class_loss(F.nll_loss, input, target, weight=weight, ignore_index=_py_ignore(ignore_index),
                      reduction=reduction)


def _one_hot(tensor, num_classes=-1):
    shifted = shift_class_target(tensor)
    if shifted.numel() and bool((shifted < 0).any()):
        raise ValueError("Class values are 1-based in R (1..C), but one is 0 or negative.")
    return F.one_hot(shifted, to_int(num_classes))


def _bce(input, target, weight=None, reduction="mean"):
    return F.binary_cross_entropy(input, _float_target(input, target), weight=weight, reduction=reduction)


def _bce_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    return F.binary_cross_entropy_with_logits(input, _float_target(input, target), weight=weight,
                                              reduction=reduction, pos_weight=pos_weight)


def _pad(input, pad, mode="constant", value=None):
    return F.pad(input, to_int(pad if isinstance(pad, (list, tuple)) else [pad]), mode=mode, value=value)


def _embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
               scale_grad_by_freq=False, sparse=False):
    if padding_idx is not None:
        padding_idx = to_int(padding_idx)
        padding_idx = padding_idx - 1 if padding_idx > 0 else padding_idx
    return F.embedding(index(input), weight, padding_idx, max_norm, float(norm_type),
                       bool(scale_grad_by_freq), bool(sparse))


_NNF = {
    "cross_entropy": _ce, "nll_loss": _nll, "one_hot": _one_hot,
    "binary_cross_entropy": _bce, "binary_cross_entropy_with_logits": _bce_logits,
    "pad": _pad, "embedding": _embedding, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
}


def nnf(name, input, **kwargs):
    """``torch.nn.functional.<name>(input, **kwargs)`` with R conventions."""
    fn = _NNF.get(name) or getattr(F, name)
    return fn(input, **_convert_kwargs(kwargs, ints=INT_ARGS | {"num_classes"}))


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


# ---------------------------------------------------------------------------
# optimizers and schedulers
# ---------------------------------------------------------------------------

def _params(params):
    """R's ``model$parameters`` (a dict), a list of tensors, or a list of
    param groups (dicts with a ``params`` entry) -> what torch.optim expects."""
    if isinstance(params, dict):
        if "params" in params:
            return [_group(params)]
        return list(params.values())
    if isinstance(params, torch.Tensor):
        return [params]
    params = list(params)
    if params and isinstance(params[0], dict):
        return [_group(g) for g in params]
    return params


def _group(g):
    g = dict(g)
    p = g["params"]
    g["params"] = list(p.values()) if isinstance(p, dict) else ([p] if isinstance(p, torch.Tensor) else list(p))
    return g


_TUPLE_ARGS = frozenset(["betas", "etas", "step_sizes"])


class OptimFactory:
    """Callable ``f(params, **hparams)`` building ``cls`` with R conventions."""

    def __init__(self, cls, r_name=None):
        self.cls = cls
        self.r_name = r_name or cls.__name__
        self.__name__ = self.r_name

    def __call__(self, params, **kwargs):
        kw = {}
        for k, v in kwargs.items():
            if k in _TUPLE_ARGS and isinstance(v, list):
                v = tuple(v)
            kw[k] = v
        return self.cls(_params(params), **kw)

    def __repr__(self):
        return f"<optimizer factory {self.r_name} -> {self.cls.__module__}.{self.cls.__name__}>"


_SCHED_INTS = frozenset("""
step_size T_max T_0 T_mult total_steps epochs steps_per_epoch patience cooldown last_epoch
milestones total_iters step_size_up step_size_down
""".split())
_SCHED_CALLABLES = frozenset(["lr_lambda", "scale_fn"])


class SchedulerFactory:
    """Callable ``f(optimizer, **kwargs)`` building a torch LR scheduler."""

    def __init__(self, cls, r_name=None):
        self.cls = cls
        self.r_name = r_name or cls.__name__
        self.__name__ = self.r_name

    def __call__(self, optimizer, **kwargs):
        kw = {}
        for k, v in kwargs.items():
            if k == "verbose":
                continue
            if k in _SCHED_INTS:
                v = to_int(v)
            elif k in _SCHED_CALLABLES and callable(v):
                v = guard(v, k)
            kw[k] = v
        return self.cls(optimizer, **kw)

    def __repr__(self):
        return f"<scheduler factory {self.r_name} -> {self.cls.__module__}.{self.cls.__name__}>"


def optim(name, r_name=None):
    return OptimFactory(getattr(torch.optim, name), r_name)


def scheduler(name, r_name=None):
    return SchedulerFactory(getattr(torch.optim.lr_scheduler, name), r_name)


def update_param_groups(optimizer, groups):
    """``opt$param_groups[[i]]$lr <- v`` from R: update the groups in place
    (R hands back a converted copy; parameters themselves are not replaced)."""
    if len(groups) != len(optimizer.param_groups):
        raise ValueError("param_groups can't be added or removed this way; use opt$add_param_group()")
    for group, new in zip(optimizer.param_groups, groups):
        for k, v in dict(new).items():
            if k == "params":
                continue
            if isinstance(group.get(k), tuple) and isinstance(v, list):
                v = tuple(v)
            group[k] = v
    return None
