"""Error tags for the R front end (reticulate note §1.3).

reticulate 1.28 flattens an R error raised inside an R closure into ``RuntimeError(message)``.
The R package stores the original R condition in a registry and raises
``"[[rcond:<id>]] <message>"`` instead; the engine keeps that text when it wraps the error
(``CallbackError``), and the R entry points (``fit()``, ``predict()``, ...) call the engine
through :func:`call` so that, when something fails, :func:`last_error` tells R which stored
condition to re-signal and where in the loop it happened.

Example (what R does)::

    errors.call(pyluz.fit, module, data, epochs=2)   # raises as usual
    info = errors.last_error()   # {"tag": 3, "kind": "callback", "name": "print_callback", ...}
"""

from __future__ import annotations

import re
import warnings

from ..control import CallbackError
from .interrupts import python_sigint

__all__ = ["TAG_RE", "call", "describe", "find_tag", "last_error", "take_error", "strip_tags", "clear", "take_warnings"]

TAG_RE = re.compile(r"\[\[rcond:(\d+)\]\] ?")

_last = None
_warnings = []


def strip_tags(text: str) -> str:
    """The message without ``[[rcond:N]]`` tags (what a pure-Python user should read)."""
    return TAG_RE.sub("", str(text))


def _chain(error):
    """The exception, then its causes/contexts, without loops."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def find_tag(error):
    """The registry id (int) of the first R condition tag in the error chain, or None."""
    for e in _chain(error):
        match = TAG_RE.search(str(e))
        if match:
            return int(match.group(1))
    return None


def describe(error) -> dict:
    """What R needs to re-signal `error`: tag, Python type, message and loop context, and for a
    failed fit the `records` of its finished epochs and its `model`.

    Counts are sent as floats (reticulate 1.28 corrupts ints above 2**31 - 1).
    """
    info = {
        "tag": find_tag(error),
        "type": type(error).__name__,
        "message": strip_tags(str(error)),
        "kind": None,
        "name": None,
        "where": None,
        "epoch": None,
        "iter": None,
        "training": None,
        "reason": None,
        "notes": [],
    }
    for e in _chain(error):
        if isinstance(e, CallbackError) and info["kind"] is None:
            info.update(
                kind=e.kind,
                name=str(e.name),
                where=e.where,
                training=e.training,
                epoch=None if e.epoch is None else float(e.epoch),
                iter=None if e.iter is None else float(e.iter),
            )
            original = e.original
            info["original_type"] = type(original).__name__
            info["original_message"] = strip_tags(str(original))
        info["notes"] += [strip_tags(n) for n in getattr(e, "__notes__", ()) or ()]
        if info.get("reason") is None and isinstance(getattr(e, "reason", None), str):
            info["reason"] = e.reason  # machine-readable cause (e.g. "module_needed"), for R's own hint
        if "records" not in info and getattr(e, "records", None) is not None:
            # a failed fit keeps its work (runner.keep_progress): R puts both on its condition
            info["records"], info["model"] = e.records, getattr(e, "model", None)
    return info


def call(fn, *args, **kwargs):
    """Call `fn`; on failure remember :func:`describe` of the error for R, then re-raise.

    Python warnings raised meanwhile are kept for :func:`take_warnings` (R re-signals them as R
    warnings, which `suppressWarnings()` and `expect_warning()` see).
    """
    global _last, _warnings
    _last = None
    _warnings = []
    with warnings.catch_warnings(record=True) as caught, python_sigint():
        try:
            return fn(*args, **kwargs)
        except BaseException as error:  # noqa: B902 - KeyboardInterrupt too: R wants the context
            _last = describe(error)
            raise
        finally:
            _warnings = [{"type": w.category.__name__, "message": strip_tags(str(w.message))} for w in caught]


def take_warnings():
    """The warnings of the last :func:`call` (list of {type, message}), once."""
    global _warnings
    out, _warnings = _warnings, []
    return out


def last_error():
    """The description of the last error seen by :func:`call` (None if the last call succeeded)."""
    return _last


def take_error():
    """:func:`last_error`, once: the engine then no longer holds it (a failed fit's description holds
    its model, which R's condition carries from then on; kept here it would outlive the condition)."""
    global _last
    out, _last = _last, None
    return out


def clear():
    global _last, _warnings
    _last = None
    _warnings = []
