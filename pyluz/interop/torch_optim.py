"""Optimizers and LR schedulers with R torch's conventions.

Optimizer and scheduler *factories* (:class:`OptimFactory`,
:class:`SchedulerFactory`) are what the R package hands to the engine for
``setup(optimizer = optim_adam)``: plain Python callables ``f(params, **kw)``
with the torch class in ``.cls``; no R code runs when the engine calls them.
Serves ``rpkg/R/torch-optim.R``.
"""

from __future__ import annotations

import torch

from .guard import guard
from .torch_indices import to_int

__all__ = [
    "OptimFactory",
    "SchedulerFactory",
    "optim",
    "scheduler",
    "update_param_groups",
    "optim_params",
    "state_get",
    "state_set",
]


def state_get(optimizer, param):
    """R torch's ``self$state$get(param)``: the state dict of ``param``, or None."""
    s = optimizer.state.get(param)
    return dict(s) if s else None


def state_set(optimizer, param, value):
    """R torch's ``self$state$set(param, value)``."""
    optimizer.state[param] = dict(value) if value else {}


def optim_params(params):
    """R's parameters (named list, list of tensors or of param groups) -> torch.optim's."""
    return _params(params)


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


_SCHED_INTS = frozenset(
    """
step_size T_max T_0 T_mult total_steps epochs steps_per_epoch patience cooldown last_epoch
milestones total_iters step_size_up step_size_down
""".split()
)
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
    for group, new in zip(optimizer.param_groups, groups, strict=True):
        for k, v in dict(new).items():
            if k == "params":
                continue
            if isinstance(group.get(k), tuple) and isinstance(v, list):
                v = tuple(v)
            group[k] = v
    return None
