"""Ctrl-C while R drives the engine: a `KeyboardInterrupt` in Python, wherever the signal lands.

R owns SIGINT when it embeds Python (reticulate starts Python without signal handlers). A Ctrl-C
during a fit would only set R's "interrupt pending" flag, which R acts on at the next R call
(inside a callback, as an error Python can't read) or after `fit()` returns (the model is lost).
`python_sigint()` gives SIGINT to Python for the duration of an engine call, so the signal
becomes a `KeyboardInterrupt` whether Python, an R callback or an R module is running: the
`Interrupt` callback then runs `on_interrupt` and `fit` returns the model trained so far. R's own
handler is saved and restored byte for byte with `sigaction()` (Python's `signal` module can't
restore a handler it did not install).

An interrupt raised *inside* R code (`rlang::interrupt()`) is an R condition, not a signal: the R
package turns it into an R error carrying `INTERRUPT_TAG`, which `guard` turns into
`KeyboardInterrupt` (see `raise_if_interrupt`).

Example (what `errors.call` does)::

    with python_sigint():
        fitted = pyluz.fit(module, data)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import signal
import threading

__all__ = ["INTERRUPT_TAG", "python_sigint", "raise_if_interrupt"]

#: Text of the R error that stands for an R interrupt condition (the R package raises it).
INTERRUPT_TAG = "[[rinterrupt]]"

_SIGACTION_SIZE = 512  # larger than `struct sigaction` on every libc: kept as opaque bytes
_libc = None


def _sigaction():
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name, use_errno=True) if name else False
    return getattr(_libc, "sigaction", None) if _libc else None


# Embedded in R, Python installed no SIGINT handler of its own (`getsignal` says None).
_R_OWNS_SIGINT = signal.getsignal(signal.SIGINT) is None
_depth = 0


@contextlib.contextmanager
def python_sigint():
    """Run the block with Python's SIGINT handler; put the previous (R's) handler back after.

    Does nothing when Python owns SIGINT anyway (Python drives), inside a nested engine call, off
    the main thread, or where no `sigaction` exists (Windows).
    """
    global _depth
    sigaction = _sigaction() if _R_OWNS_SIGINT and _depth == 0 else None
    saved = None
    if sigaction is not None and threading.current_thread() is threading.main_thread():
        saved = ctypes.create_string_buffer(_SIGACTION_SIZE)
        if sigaction(signal.SIGINT, None, saved) == 0:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        else:
            saved = None
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if saved is not None:
            sigaction(signal.SIGINT, saved, None)


def raise_if_interrupt(error):
    """Raise `KeyboardInterrupt` when `error` is the R package's stand-in for an R interrupt."""
    if INTERRUPT_TAG in str(error):
        raise KeyboardInterrupt("interrupted in R") from None
