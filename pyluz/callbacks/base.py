"""The Callback base class and the precomputed table that dispatches breakpoints."""

from ..control import CallbackError, ControlFlow, StopTraining
from ..events import EVENTS


class Callback:
    """Base class of callbacks. Define `on_<breakpoint>` methods (no arguments) and use `self.ctx`.

    `weight` orders callbacks (lower runs first, ties keep list order). `state_dict()` /
    `load_state_dict()` let checkpoints save and restore the callback.

    Example::

        class PrintLoss(pyluz.Callback):
            def on_epoch_end(self):
                print(self.ctx.epoch, self.ctx.get_metric("loss", "train"))
    """

    weight = 0
    ctx = None

    @property
    def name(self):
        """The name used in error messages."""
        return type(self).__name__

    def set_ctx(self, ctx):
        self.ctx = ctx

    def hook(self, name):
        """The function run at breakpoint `name`, or None: by default the `name` method, if defined.

        A callback that picks its breakpoint at run time (e.g. LRScheduler's `call_on`) overrides this.
        """
        fn = getattr(self, name, None)
        return fn if callable(fn) else None

    def state_dict(self):
        """What a checkpoint keeps of this callback; None means nothing."""
        return None


def check_callbacks(callbacks, argument="callbacks"):
    """Validate a user's callbacks argument and return a list of instances."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or isinstance(callbacks, type):
        callbacks = [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"`{argument}` must be a list of Callback instances, got {type(callbacks).__name__}.")
    for i, cb in enumerate(callbacks):
        if isinstance(cb, type) and issubclass(cb, Callback):
            raise TypeError(
                f"`{argument}[{i}]` is the class {cb.__name__}, not an instance. "
                "Did you forget to instantiate the callback?"
            )
        if not isinstance(cb, Callback):
            raise TypeError(f"`{argument}[{i}]` must be a Callback instance, got {type(cb).__name__}.")
    return list(callbacks)


def order_callbacks(callbacks):
    """Stable sort by weight (luz: a missing weight counts as 0)."""
    return sorted(callbacks, key=lambda cb: getattr(cb, "weight", 0))


class HookTable:
    """For each breakpoint, the bound methods of the callbacks that define it, computed once.

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
