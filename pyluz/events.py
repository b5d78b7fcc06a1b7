"""Breakpoints: the one list (in the order the loop reaches them), its subsets, the name rule and
`HookTable`, which dispatches a breakpoint to the callbacks that define it.

The order, the default step and the control flow are described in `docs/loop.md`.
"""

from .checks import given, message
from .control import CallbackError, ControlFlow, StopTraining

FIT_EVENTS = (
    "on_fit_begin",
    "on_epoch_begin",
    "on_train_begin",
    "on_train_batch_begin",
    "on_train_batch_after_pred",
    "on_train_batch_after_loss",
    "on_train_batch_before_backward",
    "on_train_batch_before_step",
    "on_train_batch_after_step",
    "on_train_batch_end",
    "on_train_end",
    "on_valid_begin",
    "on_valid_batch_begin",
    "on_valid_batch_after_pred",
    "on_valid_batch_after_loss",
    "on_valid_batch_end",
    "on_valid_end",
    "on_epoch_end",
    "on_fit_end",
)
EXTRA_EVENTS = (
    "on_interrupt",
    "on_early_stopping",
    "on_predict_begin",
    "on_predict_batch_begin",
    "on_predict_batch_end",
    "on_predict_end",
)
EVENTS = FIT_EVENTS + EXTRA_EVENTS
# Subsets. The fit's per-batch breakpoints are where per-batch values (`ctx.loss`, `ctx.pred`) are current.
TRAIN_BATCH_EVENTS = tuple(e for e in FIT_EVENTS if e.startswith("on_train_batch_"))
VALID_BATCH_EVENTS = tuple(e for e in FIT_EVENTS if e.startswith("on_valid_batch_"))
BATCH_EVENTS = TRAIN_BATCH_EVENTS + VALID_BATCH_EVENTS
PREDICT_EVENTS = tuple(e for e in EXTRA_EVENTS if e.startswith("on_predict_"))


def is_breakpoint_name(name):
    """Built-in breakpoints and custom ones: any `on_*` identifier that `ctx.call_callbacks` may call.

    >>> is_breakpoint_name("on_epoch_end"), is_breakpoint_name("on_my_event"), is_breakpoint_name("epoch_end")
    (True, True, False)
    """
    return isinstance(name, str) and (name in EVENTS or (name.startswith("on_") and name.isidentifier()))


def check_event(name, argument="call_on"):
    """Raise a helpful error when `name` is not a breakpoint."""
    if name not in EVENTS:
        import difflib

        # `on_batch_*` (older luz code, luz's gallery) means the training breakpoints
        guess = "on_train_" + str(name)[3:] if str(name).startswith("on_batch_") else None
        close = [guess] if guess in EVENTS else difflib.get_close_matches(str(name), EVENTS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(message(argument, "a breakpoint name such as 'on_epoch_end'", given(name)) + hint)
    return name


class HookTable:
    """For each breakpoint, the bound methods of the callbacks that define it, computed once.

    A callback answers `cb.hook(name)` with the function to run at breakpoint `name`, or None.
    A breakpoint nobody defines maps to an empty tuple, so calling it costs one dict lookup.
    """

    def __init__(self, callbacks):
        self.callbacks = callbacks
        self.table = {name: self._collect(name) for name in EVENTS}

    def _collect(self, name):
        hooks = []
        for cb in self.callbacks:
            fn = cb.hook(name)
            if fn is not None:
                hooks.append((cb, fn))
        return tuple(hooks)

    def hooks(self, name):
        hooks = self.table.get(name)
        if hooks is None:  # a custom breakpoint: callbacks may define any on_* name
            hooks = self.table[name] = self._collect(name)
        return hooks

    def call(self, name, ctx):
        # A StopTraining lets the other callbacks of this breakpoint finish first (luz's early
        # stopping runs last in on_epoch_end), then stops the loop.
        stop = None
        for cb, fn in self.hooks(name):
            try:
                fn()
            except StopTraining as e:
                stop = e
            except (ControlFlow, CallbackError):
                raise
            except Exception as e:
                raise CallbackError("callback", cb.name, name, ctx.epoch, ctx.iter, e, training=ctx.training) from e
        if stop is not None:
            try:
                raise stop
            finally:
                stop = None  # the traceback holds this frame: don't let the frame hold the traceback
