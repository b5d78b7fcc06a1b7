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

import torch

from .interrupts import raise_if_interrupt

__all__ = ["ensure_main_thread", "guard", "is_r_callable", "RThreadError"]

_current = threading.current_thread
_main = threading.main_thread
_grad_enabled = torch.is_grad_enabled
_set_grad = torch._C._set_grad_enabled


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


def guard(fn, what: str | None = None, no_grad: bool = False):
    """Wrap an R callable so it refuses to run off the main thread.

    Already-guarded callables are returned unchanged (with `no_grad`, their R function is
    re-wrapped). `no_grad=True`: the call runs with gradients off (luz runs callbacks under
    `local_no_grad()`); one wrapper does both, because per-batch hooks pay for every layer.
    """
    if fn is None:
        return fn
    if getattr(fn, "__pyluz_r__", False):
        if not no_grad or getattr(fn, "__pyluz_no_grad__", False):
            return fn
        fn = getattr(fn, "__wrapped_r__", fn)
    label = what or getattr(fn, "__name__", "an R function")

    # An R interrupt (`rlang::interrupt()`) comes back as an R error carrying INTERRUPT_TAG: a
    # KeyboardInterrupt here, so the Interrupt callback ends the fit and keeps the work.
    if no_grad:

        def r_call(*args, **kwargs):
            if _current() is not _main():
                raise RThreadError(_message(label))
            try:
                if _grad_enabled():
                    _set_grad(False)
                    try:
                        return fn(*args, **kwargs)
                    finally:
                        _set_grad(True)
                return fn(*args, **kwargs)
            except RuntimeError as e:
                raise_if_interrupt(e)
                raise
    else:

        def r_call(*args, **kwargs):
            if _current() is not _main():
                raise RThreadError(_message(label))
            try:
                return fn(*args, **kwargs)
            except RuntimeError as e:
                raise_if_interrupt(e)
                raise

    try:
        functools.update_wrapper(r_call, fn, assigned=("__doc__",), updated=())
    except Exception:  # pragma: no cover - exotic callables
        pass
    r_call.__name__ = label if label.isidentifier() else "r_call"
    r_call.__qualname__ = r_call.__name__
    r_call.__pyluz_r__ = True
    r_call.__pyluz_no_grad__ = no_grad
    r_call.__wrapped_r__ = fn
    return r_call


def is_r_callable(obj) -> bool:
    """True for callables that run R code (guarded wrappers, reticulate R functions)."""
    if getattr(obj, "__pyluz_r__", False):
        return True
    return getattr(obj, "__module__", None) == "rpytools.call"
