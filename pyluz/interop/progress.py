"""A progress renderer implemented by R functions (the R package draws with ``cli``).

The engine's `Progress` callback throttles itself (at most one bar update every ~100 ms) and
calls the renderer's methods; `RRenderer` forwards them to R closures through the main-thread
guard. `use_r_renderer(factory)` makes it the default renderer (``factory()`` returns the named
list of R functions of a new renderer); `use_r_renderer(None)` restores the Python default.

Example (what the R package does)::

    progress.use_r_renderer(r_new_renderer)
"""

from __future__ import annotations

from ..callbacks import progress as _progress
from .guard import guard

__all__ = ["RRenderer", "use_r_renderer", "METHODS"]

METHODS = ("epoch_begin", "bar_begin", "bar_update", "bar_end", "epoch_metrics", "epoch_end", "message")


def _noop(*args, **kwargs):
    return None


class RRenderer:
    """Renderer whose methods are R functions (missing ones do nothing)."""

    def __init__(self, fns):
        fns = dict(fns or {})
        # seconds between bar refreshes the renderer wants (Progress's default when absent)
        self.refresh_interval = fns.pop("refresh_interval", None)
        unknown = set(fns) - set(METHODS)
        if unknown:
            raise ValueError(f"Unknown renderer methods {sorted(unknown)}; expected some of {list(METHODS)}.")
        for name in METHODS:
            fn = fns.get(name)
            setattr(self, name, guard(fn, f"progress.{name}") if fn is not None else _noop)


def use_r_renderer(factory):
    """Make ``RRenderer(factory())`` the renderer of every verbose run (None: back to tqdm/lines)."""
    if factory is None:
        _progress.renderer_factory = None
        return
    factory = guard(factory, "progress renderer")
    _progress.renderer_factory = lambda: RRenderer(factory())
