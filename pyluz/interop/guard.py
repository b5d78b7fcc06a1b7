"""Main-thread guard for Python -> R calls.

reticulate 1.28 aborts the whole R process when R code runs on a thread other
than Python's main thread.  Every R closure the R package hands to Python is
wrapped with :func:`guard`, which raises a ``RuntimeError`` instead.

The wrappers carry ``__pyluz_r__ = True`` so the engine can tell R-backed
callables apart (:func:`is_r_callable`).
"""

from __future__ import annotations

import functools
import threading

__all__ = ["ensure_main_thread", "guard", "is_r_callable", "RThreadError"]

_current = threading.current_thread
_main = threading.main_thread


class RThreadError(RuntimeError):
    """R code was called from a thread other than Python's main thread."""


def _message(what: str) -> str:
    return (
        "R code can only run on Python's main thread; "
        f"{what} was called from another thread (called from thread {_current().name!r}). "
        "Avoid threads (DataParallel, background workers, tqdm monitor) with R-defined "
        "modules, datasets and callbacks."
    )


def ensure_main_thread(what: str = "an R function") -> None:
    """Raise :class:`RThreadError` unless running on Python's main thread."""
    if _current() is not _main():
        raise RThreadError(_message(what))


def guard(fn, what: str | None = None):
    """Wrap an R callable so it refuses to run off the main thread.

    Already-guarded callables are returned unchanged.
    """
    if fn is None or getattr(fn, "__pyluz_r__", False):
        return fn
    label = what or getattr(fn, "__name__", "an R function")

    def r_call(*args, **kwargs):
        if _current() is not _main():
            raise RThreadError(_message(label))
        return fn(*args, **kwargs)

    try:
        functools.update_wrapper(r_call, fn, assigned=("__doc__",), updated=())
    except Exception:  # pragma: no cover - exotic callables
        pass
    r_call.__name__ = label if label.isidentifier() else "r_call"
    r_call.__qualname__ = r_call.__name__
    r_call.__pyluz_r__ = True
    r_call.__wrapped_r__ = fn
    return r_call


def is_r_callable(obj) -> bool:
    """True for callables that run R code (guarded wrappers, reticulate R functions)."""
    if getattr(obj, "__pyluz_r__", False):
        return True
    return getattr(obj, "__module__", None) == "rpytools.call"
