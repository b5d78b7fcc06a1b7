"""The Callback base class and the checks of a `callbacks` argument (dispatch: `pyluz.events.HookTable`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..checks import check_type
from ..events import HookTable

__all__ = ["Callback", "HookTable", "check_callbacks", "order_callbacks"]


class Callback:
    """Base class of callbacks. Define `on_<breakpoint>` methods (no arguments) and use `self.ctx`.

    `weight` orders callbacks (lower runs first, ties keep list order). `state_dict()` /
    `load_state_dict()` let checkpoints save and restore the callback.

    Example:

    >>> class PrintLoss(pyluz.Callback):
    ...     def on_epoch_end(self):
    ...         print(self.ctx.epoch, round(self.ctx.get_metric("loss", "train"), 1) > 0)
    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> fitted = model.fit((x, y), epochs=2, verbose=False, callbacks=[PrintLoss()])
    1 True
    2 True
    """

    weight = 0
    ctx = None

    @property
    def name(self) -> str:
        """The name used in error messages."""
        return type(self).__name__

    def set_ctx(self, ctx: Any) -> None:
        self.ctx = ctx

    def hook(self, name: str) -> Callable[[], Any] | None:
        """The function run at breakpoint `name`, or None: by default the `name` method, if defined.

        A callback that picks its breakpoint at run time (e.g. LRScheduler's `call_on`) overrides this.
        """
        fn = getattr(self, name, None)
        return fn if callable(fn) else None

    def state_dict(self) -> dict | None:
        """What a checkpoint keeps of this callback; None means nothing."""
        return None


def check_callbacks(callbacks, argument="callbacks"):
    """Validate a user's callbacks argument and return a list of instances."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or isinstance(callbacks, type):
        callbacks = [callbacks]
    check_type(callbacks, argument, (list, tuple), "a list of Callback instances")
    for i, cb in enumerate(callbacks):
        if isinstance(cb, type) and issubclass(cb, Callback):
            raise TypeError(
                f"`{argument}[{i}]` is the class {cb.__name__}, not an instance. "
                "Did you forget to instantiate the callback?"
            )
        check_type(cb, f"{argument}[{i}]", Callback, "a Callback instance")
    return list(callbacks)


def order_callbacks(callbacks):
    """Stable sort by weight (luz: a missing weight counts as 0)."""
    return sorted(callbacks, key=lambda cb: getattr(cb, "weight", 0))
