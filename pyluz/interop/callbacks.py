"""Callbacks written in R (``luz_callback()``) as engine callbacks.

`RCallback` receives the R callback's breakpoint methods as callables and sets **only those**
as attributes, so the engine's `HookTable` (built with `Callback.hook`) dispatches nothing else to
R: a breakpoint the R callback does not define costs nothing. Every R call goes through the
main-thread guard and runs with gradients off, as in luz.

Example (what the R package does)::

    cb = RCallback("print_callback", {"on_epoch_end": r_fn}, weight=0, bind_ctx=r_bind)
"""

from __future__ import annotations

import math

from ..callbacks.base import Callback
from ..checks import check_callable, fail
from ..events import is_breakpoint_name
from .guard import guard

__all__ = ["RCallback", "is_breakpoint_name"]


def _as_weight(weight):
    if weight is None:
        return 0
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or math.isnan(weight):
        fail("weight", "a number", weight, "R callback", TypeError)
    return weight


class BindsRContext:
    """A `ctx` that is also bound into the R object whenever the engine sets it: luz binds ctx into
    R callbacks and metrics, so their methods see `ctx` as a free variable."""

    _ctx = None
    _bind = None  # a guarded R function(ctx), or None

    @property
    def ctx(self):
        return self._ctx

    @ctx.setter
    def ctx(self, value):
        self._ctx = value
        if self._bind is not None:
            self._bind(value)


class RCallback(BindsRContext, Callback):
    """An engine callback whose breakpoints, state functions and ctx binding are R closures.

    - `hooks`: ``{breakpoint: callable()}``; only these become methods.
    - `weight`: ordering weight (``Inf`` allowed, as luz's early stopping).
    - `state_dict` / `load_state_dict`: optional callables, for checkpoints.
    - `bind_ctx`: ``callable(ctx)``, called when the engine sets or clears ``ctx`` (luz binds
      ``ctx`` into the R callback's environment, so its methods see it as a free variable).
    """

    def __init__(self, name, hooks=None, weight=0, state_dict=None, load_state_dict=None, bind_ctx=None):
        self._name = str(name)
        self._ctx = None
        self.weight = _as_weight(weight)
        self.r_hooks = []
        for bp, fn in dict(hooks or {}).items():
            if not is_breakpoint_name(bp):
                raise ValueError(f"R callback {self._name!r}: {bp!r} is not a breakpoint name (on_*).")
            if not callable(fn):
                check_callable(fn, bp, owner=f"R callback {self._name!r}")
            # luz runs every callback with gradients off (`local_no_grad()`), so R callbacks
            # written for luz may update parameters in place (e.g. `p$clamp_()`).
            setattr(self, bp, guard(fn, f"{self._name}.{bp}", no_grad=True))
            self.r_hooks.append(bp)
        if state_dict is not None:
            self.state_dict = guard(state_dict, f"{self._name}.state_dict")
        if load_state_dict is not None:
            self.load_state_dict = guard(load_state_dict, f"{self._name}.load_state_dict")
        self._bind = guard(bind_ctx, f"{self._name}.set_ctx") if bind_ctx is not None else None

    @property
    def name(self):
        return self._name

    def __repr__(self):
        return f"<RCallback {self._name} hooks={self.r_hooks} weight={self.weight}>"
