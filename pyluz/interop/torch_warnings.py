"""Python warnings raised while R drives become R warnings.

Python prints warnings to stderr with the file and line that raised them (a path
in site-packages); R users expect R warnings they can catch with
``suppressWarnings()`` / ``withCallingHandlers()``. :func:`install` replaces
``warnings.showwarning`` (which runs only for warnings the filters let through)
with a call to an R function that signals an R warning. Warnings raised off the
main thread keep Python's printer (R can't run there).
Serves ``rpkg/R/torch-utils.R``.
"""

from __future__ import annotations

import re
import threading
import warnings

__all__ = ["install", "uninstall", "r_message"]

_TRIGGERED = re.compile(r"\s*\(Triggered internally at [^)]*\)\s*$")
_previous = None


def r_message(message, category):
    """``UserWarning: text`` without libtorch's "(Triggered internally at <path>)" tail."""
    text = _TRIGGERED.sub("", str(message))
    return f"{category.__name__}: {text}"


def install(r_warn):
    """Route shown warnings to ``r_warn(text)`` (an R function); idempotent."""
    global _previous
    if getattr(warnings.showwarning, "__pyluz_r__", False):
        return None
    _previous = warnings.showwarning
    previous = _previous

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if threading.current_thread() is not threading.main_thread():
            return previous(message, category, filename, lineno, file, line)
        r_warn(r_message(message, category))
        return None

    showwarning.__pyluz_r__ = True
    warnings.showwarning = showwarning
    return None


def uninstall():
    """Put Python's own printer back."""
    global _previous
    if _previous is not None:
        warnings.showwarning = _previous
        _previous = None
