"""Monitored metrics: what EarlyStopping, ModelCheckpoint and KeepBestModel watch (luz's `monitor_metrics`).

A monitor name is `<set>_<metric>[_<opt>]`, read case-insensitively: `valid_loss`, `Train_Acc`,
`valid_my_metric` (the metric part may contain underscores), `train_loss_generator` (the
`generator` optimizer's loss when the loss is recorded per optimizer). The name is matched against
the keys actually recorded in `ctx.records["metrics"][set][epoch - 1]`.
"""

import math

from ..checks import check_choice, check_real, check_type
from ..records import flat_metrics
from .base import Callback

MODES = ("min", "max", "zero")


def check_mode(mode, argument="mode"):
    return check_choice(mode, argument, MODES)


def check_min_delta(min_delta, argument="min_delta"):
    return check_real(min_delta, argument, lo=0, expected="a finite number >= 0")


def check_monitor(monitor, argument="monitor"):
    check_type(monitor, argument, str, "a string such as 'valid_loss'")
    set_name, sep, metric = monitor.partition("_")
    if not (set_name and sep and metric):
        raise ValueError(
            f"`{argument}` must look like '<set>_<metric>' (e.g. 'valid_loss', 'train_acc'), " f"got {monitor!r}."
        )
    return monitor


def available_names(records, epoch):
    """Every monitor name that would work at `epoch`: `train_loss`, `valid_acc`, `train_loss_generator`, ..."""
    names = []
    for set_name, entries in records.get("metrics", {}).items():
        if not 1 <= epoch <= len(entries) or not isinstance(entries[epoch - 1], dict):
            continue
        names += [f"{set_name}_{name}" for name, _ in flat_metrics(entries[epoch - 1])]
    return names


def _lookup(mapping, key):
    """Case-insensitive dict lookup; returns (found, value)."""
    for k, v in mapping.items():
        if str(k).lower() == key:
            return True, v
    return False, None


def find_quantity(records, epoch, monitor):
    """The value of monitor `monitor` recorded at `epoch` (1-based), as a float.

    Raises ValueError naming what is available when the metric was not recorded.
    """
    name = monitor.lower()
    set_name, _, rest = name.partition("_")
    entries = None
    for s, e in records.get("metrics", {}).items():
        if str(s).lower() == set_name:
            entries = e
            break
    values = entries[epoch - 1] if entries is not None and 1 <= epoch <= len(entries) else None
    if not isinstance(values, dict):
        values = {}
    found, value = _lookup(values, rest)
    sub = None
    if not found:
        # The longest recorded key that prefixes `rest`, the remainder naming an optimizer / index.
        for key in sorted(values, key=lambda k: -len(str(k))):
            k = str(key).lower()
            if rest.startswith(k + "_") and isinstance(values[key], (dict, list, tuple)):
                sub = rest[len(k) + 1 :]
                value = values[key]
                if isinstance(value, dict):
                    found, value = _lookup(value, sub)
                else:
                    found = sub.isdigit() and int(sub) < len(value)
                    value = value[int(sub)] if found else None
                if found:
                    break
    if not found:
        available = available_names(records, epoch)
        hint = ", ".join(repr(a) for a in available) if available else "none"
        extra = ""
        if not values:
            extra = f" No {set_name!r} metrics were recorded at epoch {epoch}" + (
                " (was `valid_data` given?)." if set_name == "valid" else "."
            )
        raise ValueError(
            f"`monitor` = {monitor!r} does not name a metric recorded at epoch {epoch}.{extra} " f"Available: {hint}."
        )
    if isinstance(value, dict):
        if len(value) == 1:
            value = next(iter(value.values()))
        else:
            opts = ", ".join(f"'{monitor}_{k}'" for k in value)
            raise ValueError(
                f"`monitor` = {monitor!r} has one value per optimizer; add the optimizer name, " f"one of {opts}."
            )
    if isinstance(value, (list, tuple)):
        raise ValueError(
            f"Expected the monitored metric {monitor!r} to be one number, got {len(value)} values; "
            f"use '{monitor}_<i>'."
        )
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"Expected the monitored metric {monitor!r} to be a number, " f"got {type(value).__name__}."
        ) from None


def compare(new, best, mode, min_delta=0.0):
    """True when `new` improves on `best`.

    min: `new < best - min_delta`; max: `new > best + min_delta`; zero (closest to zero):
    `abs(new) < abs(best) - min_delta` (luz compared `best` with itself here, a bug). A NaN `best` is beaten by
    any non-NaN value; a NaN `new` never improves.
    """
    if math.isnan(new):
        return False
    if best is None or math.isnan(best):
        return True
    if mode == "min":
        return new < best - min_delta
    if mode == "max":
        return new > best + min_delta
    if mode == "zero":
        return abs(new) < abs(best) - min_delta
    check_mode(mode)


class Monitor:
    """A monitored metric with its mode and min_delta: `value(ctx)` and `improved(new, best)`.

    Example:

    >>> m = Monitor("valid_loss", mode="min", min_delta=0.01)
    >>> m.improved(0.5, 0.6), m.improved(0.595, 0.6)
    (True, False)
    """

    def __init__(self, monitor="valid_loss", mode="min", min_delta=0):
        self.monitor = check_monitor(monitor)
        self.mode = check_mode(mode)
        self.min_delta = check_min_delta(min_delta)

    @property
    def name(self):
        return self.monitor

    def value(self, ctx, epoch=None):
        return find_quantity(ctx.records, ctx.epoch if epoch is None else epoch, self.monitor)

    def improved(self, new, best):
        return compare(new, best, self.mode, self.min_delta)

    def __repr__(self):
        return f"Monitor({self.monitor!r}, mode={self.mode!r}, min_delta={self.min_delta})"


class MonitorCallback(Callback):
    """Base of callbacks that track the best value of a monitored metric.

    The tracked state (`best`, ...) is reset at `on_fit_begin`, except when a checkpoint restored it
    during this same fit (AutoResume / ResumeFromCheckpoint may run before or after us in
    `on_fit_begin`), so reusing an instance in a new fit starts fresh.
    """

    def __init__(self, monitor="valid_loss", mode="min", min_delta=0):
        self.monitor_spec = Monitor(monitor, mode, min_delta)
        self._restored_for = None
        self.reset()

    @property
    def monitor(self):
        return self.monitor_spec.monitor

    @property
    def mode(self):
        return self.monitor_spec.mode

    @property
    def min_delta(self):
        return self.monitor_spec.min_delta

    def reset(self):
        self.best = None

    def on_fit_begin(self):
        if self._restored_for is not self.ctx:
            self.reset()
        self._restored_for = None

    def mark_restored(self):
        self._restored_for = self.ctx

    def quantity(self):
        return self.monitor_spec.value(self.ctx)

    def improved(self, new):
        return self.monitor_spec.improved(new, self.best)
