"""Argument checks with one message shape: ``[Owner: ]`argument` must be <expected>, got <given>.``

Every public function validates its arguments through these, so errors read the same everywhere
(and the same from R, which shows them with the R argument names). `owner` names the function or
class when the argument name alone would be ambiguous (``"MixUp"``, ``"lr_finder"``).

A value of the wrong kind raises TypeError; a value of the right kind but out of range raises
ValueError (numbers given where a number is expected are ValueErrors, as for metrics' options).

>>> check_bool("yes", "stack")
Traceback (most recent call last):
...
TypeError: `stack` must be True or False, got 'yes'.
>>> check_real(2.0, "threshold", owner="BinaryAccuracy", lo=0, hi=1)
Traceback (most recent call last):
...
ValueError: BinaryAccuracy: `threshold` must be a number in [0, 1], got 2.0.
"""

import math
import numbers
import os


def given(value):
    """How a message shows the value it got: the repr of a short scalar, else the type's name."""
    if value is None or isinstance(value, (bool, numbers.Number)) or (isinstance(value, str) and len(value) <= 60):
        return repr(value)
    return type(value).__name__


def message(argument, expected, got, owner=None):
    """The one message shape (`got` is already formatted; see `given`)."""
    where = f"{owner}: " if owner else ""
    return f"{where}`{argument}` must be {expected}, got {got}."


def fail(argument, expected, value, owner=None, error=ValueError):
    """Raise `error` with the message for `value`."""
    raise error(message(argument, expected, given(value), owner))


def is_bool(value):
    """True for Python and numpy booleans."""
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def is_integer(value):
    """An integral number, not a bool (integral floats count: R sends `200` as a double)."""
    return isinstance(value, numbers.Real) and not is_bool(value) and math.isfinite(value) and float(value).is_integer()


def check_bool(value, argument, owner=None):
    """`value` as a bool, or TypeError."""
    if not is_bool(value):
        fail(argument, "True or False", value, owner, TypeError)
    return bool(value)


def check_optional_bool(value, argument, owner=None):
    """None or a bool (e.g. `verbose`, where None means "decide for me")."""
    if value is None:
        return None
    if not is_bool(value):
        fail(argument, "True, False or None", value, owner, TypeError)
    return bool(value)


def _real_expected(lo=None, hi=None, lo_open=False, finite=True):
    """What `check_real` says it expected for these bounds ("a number in [0, 1]", "a number > 0", ...)."""
    if lo is not None and hi is not None:
        return f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    if lo is not None:
        return f"a number {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"a number <= {hi:g}"
    return "a finite number" if finite else "a number"


def check_real(value, argument, owner=None, lo=None, hi=None, lo_open=False, expected=None, finite=True):
    """`value` as a float within [lo, hi] (`lo_open`: lo itself excluded), or ValueError.

    NaN is always refused; infinities too unless `finite=False` (e.g. a baseline of -inf).

    >>> check_real("low", "baseline", expected="None or a number", finite=False)
    Traceback (most recent call last):
    ...
    ValueError: `baseline` must be None or a number, got 'low'.
    """
    original = value
    ok = isinstance(value, numbers.Real) and not is_bool(value)
    if ok:
        value = float(value)
        above = lo is None or (value > lo if lo_open else value >= lo)
        ok = (math.isfinite(value) if finite else not math.isnan(value)) and above and (hi is None or value <= hi)
    if not ok:
        fail(argument, expected or _real_expected(lo, hi, lo_open, finite), original, owner)
    return value


def check_positive(value, argument, owner=None, expected="a positive finite number"):
    """A finite number > 0, as a float."""
    return check_real(value, argument, owner, lo=0, lo_open=True, expected=expected)


def check_int(value, argument, owner=None, min_value=None, choices=None, max_value=None):
    """`value` as an int (integral floats accepted), in [`min_value`, `max_value`] / one of `choices`, or
    ValueError.

    >>> check_int(2, "rank", min_value=0, max_value=1)
    Traceback (most recent call last):
    ...
    ValueError: `rank` must be an integer in [0, 1], got 2.
    """
    ok = is_integer(value)
    if ok:
        value = int(value)
        ok = (
            (min_value is None or value >= min_value)
            and (max_value is None or value <= max_value)
            and (choices is None or value in choices)
        )
    if not ok:
        if choices is not None:
            expected = "one of " + ", ".join(str(c) for c in choices)
        elif min_value is not None and max_value is not None:
            expected = f"an integer in [{min_value}, {max_value}]"
        elif max_value is not None:
            expected = f"an integer <= {max_value}"
        elif min_value is not None:
            expected = f"an integer >= {min_value}"
        else:
            expected = "an integer"
        fail(argument, expected, value, owner)
    return value


def check_choice(value, argument, choices, owner=None):
    """One of `choices` (strings, or None where "not given" is allowed), or ValueError.

    >>> check_choice("ddpp", "strategy", (None, "ddp"))
    Traceback (most recent call last):
    ...
    ValueError: `strategy` must be one of None, "ddp", got 'ddpp'.
    """
    if not (value is None or isinstance(value, str)) or value not in choices:
        fail(
            argument, "one of " + ", ".join(f'"{c}"' if isinstance(c, str) else repr(c) for c in choices), value, owner
        )
    return value


def check_type(value, argument, types, expected, owner=None):
    """`value` if it is an instance of `types`, else TypeError saying `expected` and the type given."""
    if not isinstance(value, types):
        raise TypeError(message(argument, expected, type(value).__name__, owner))
    return value


def check_callable(value, argument, expected="a function", owner=None, allow_none=False):
    """`value` if it is callable (or None with `allow_none`), else TypeError saying `expected`.

    >>> check_callable(3, "report", "None or a function", owner="LRScheduler", allow_none=True)
    Traceback (most recent call last):
    ...
    TypeError: LRScheduler: `report` must be None or a function, got 3.
    """
    if not callable(value) and not (allow_none and value is None):
        fail(argument, expected, value, owner, TypeError)
    return value


def check_optional_str(value, argument, expected="a string or None", owner=None):
    """None or a str, else TypeError."""
    if value is not None and not isinstance(value, str):
        fail(argument, expected, value, owner, TypeError)
    return value


def check_path(value, argument="path", owner=None):
    """A non-empty file path (str or os.PathLike, `~` expanded), as a str."""
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(message(argument, "a file path (str or os.PathLike)", type(value).__name__, owner))
    path = os.path.expanduser(os.fspath(value))
    if not path:
        fail(argument, "a non-empty file path", value, owner)
    return path


__all__ = [
    "given",
    "message",
    "fail",
    "is_bool",
    "is_integer",
    "check_bool",
    "check_optional_bool",
    "check_real",
    "check_positive",
    "check_int",
    "check_choice",
    "check_type",
    "check_callable",
    "check_optional_str",
    "check_path",
]
