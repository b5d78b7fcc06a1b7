"""Cheap reads of ``ctx`` fields from R: probes that say whether R's converted copy is still current.

Reading ``ctx$loss`` from an R callback used to cost ~80-130 µs (``ctx$records`` 220-300 µs and
growing with the epochs): reticulate wraps every Python object that reaches R in an R environment
with its class vector, then converts it, and the records are converted whole at every read. The R
side (``rpkg/R/context.R``) keeps the converted value of each field and asks a probe, with
``reticulate::py_len()``, whether it is still current: ``py_len`` crosses once and hands back a
plain R integer, with no wrapper built. So a read of an unchanged field costs one crossing, and a
changed one that crossing plus the conversion it needs anyway.

- `IntProbe`: ``len()`` is the field's value + 1 when it is an int R can hold (``iter``,
  ``epoch``), else 0 ("read it the usual way").
- `FieldProbe`: ``len()`` is a version that moves whenever the field is no longer the very
  objects R converted last: the same object, and inside dicts, lists and tuples the same keys and
  items, by identity (the probe holds them, so their ids can't be reused). A tensor changed in
  place is still the same tensor, which R's copy wraps too. Its last bit says whether a dict kept
  its keys: R then fetches only the items (converting a dict of tensors whole costs ~100 µs).
- `RecordsProbe`: ``len()`` moves when records were logged, replaced or resized; `changes()`
  gives what R must convert: everything after a `Context.set_records()` (or a change made without
  `Context.log()`), else the entries from the first one an edit touched (`Context.records_edits`),
  per ``records[what][set]`` list. Its cost does not grow with the number of epochs.

One R cache (and its probes) per R binding of ``ctx``; probes never change ``ctx``.
"""

from __future__ import annotations

import operator

__all__ = ["IntProbe", "FieldProbe", "RecordsProbe"]

_INT_MAX = 2**31 - 2  # + 1 must still be an R integer
_CONTAINERS = (dict, list, tuple)


class IntProbe:
    """``len(probe) == ctx.<name> + 1`` for an int in R's range, else 0."""

    __slots__ = ("_ctx", "_name")

    def __init__(self, ctx, name):
        self._ctx, self._name = ctx, str(name)

    def __len__(self):
        value = getattr(self._ctx, self._name, None)
        return value + 1 if type(value) is int and 0 <= value <= _INT_MAX else 0


def _parts(value, out):
    """`value` and, inside dicts / lists / tuples, every key and item, in walking order."""
    out.append(value)
    if type(value) is dict:
        out.append(len(value))
        for k, v in value.items():
            out.append(k)
            _parts(v, out)
    elif isinstance(value, _CONTAINERS):
        out.append(len(value))
        for v in value:
            _parts(v, out)
    return out


class FieldProbe:
    """``len(probe)``: ``2 * version + k`` for ``ctx.<name>``. The version moves when the field is no
    longer the same objects; ``k`` is 1 when, moreover, it is not a dict with the same keys (in the
    same order) as before, so R can rebuild a dict of tensors from its items and the names it has."""

    __slots__ = ("_ctx", "_name", "_seen", "_keys", "_len")

    def __init__(self, ctx, name):
        self._ctx, self._name = ctx, str(name)
        self._seen = self._keys = None
        self._len = 1

    def __len__(self):
        value = getattr(self._ctx, self._name, None)
        seen = self._seen
        if not isinstance(value, _CONTAINERS):
            if seen is None or len(seen) != 1 or seen[0] is not value:  # a new tensor: every batch
                self._seen, self._keys = [value], None
                self._len = (self._len // 2 + 1) * 2 + 1
            return self._len  # else the common case: the same tensor / optimizer / None
        parts = _parts(value, [])
        if seen is None or len(seen) != len(parts) or not all(map(operator.is_, seen, parts)):
            keys = tuple(value) if type(value) is dict and all(type(k) is str for k in value) else None
            same_keys = keys is not None and keys == self._keys
            self._seen, self._keys = parts, keys
            self._len = (self._len // 2 + 1) * 2 + (0 if same_keys else 1)
        return self._len

    def __getitem__(self, key):
        """``ctx.<name>[key]``: an item of the dict, in the one crossing R pays for it."""
        return getattr(self._ctx, self._name)[key]


class RecordsProbe:
    """What changed in ``ctx.records`` since R last converted it (see the module docstring)."""

    __slots__ = ("_ctx", "_key", "_version", "_records", "_edits", "_cursor", "_lengths")

    def __init__(self, ctx):
        self._ctx = ctx
        self._key = None
        self._version = 0
        self._records = self._edits = None  # what R's copy was converted from
        self._cursor = 0
        self._lengths = {}

    @staticmethod
    def _sizes(records):
        return {(w, s): len(v) for w, sets in records.items() if type(sets) is dict for s, v in sets.items()}

    def __len__(self):
        ctx = self._ctx
        records, edits = ctx.records, ctx.records_edits
        key = (id(records), id(edits), len(edits), len(records), tuple(self._sizes(records).items()))
        if key != self._key:
            self._key = key
            self._version += 1
        return self._version

    def changes(self):
        """``None``: convert ``ctx.records`` whole; else ``[[what, set, start (1-based), entries], ...]``
        to put into R's copy (entries from `start` on)."""
        ctx = self._ctx
        records, edits = ctx.records, ctx.records_edits
        sizes = self._sizes(records)
        fresh = records is not self._records or edits is not self._edits or self._cursor > len(edits)
        starts = {}
        if not fresh:
            for what, set_, first in edits[self._cursor :]:
                key = (what, set_)
                starts[key] = min(first, starts.get(key, first))
            # a list that changed length without an edit (changed by hand): convert everything
            fresh = any(n != self._lengths.get(k) and k not in starts for k, n in sizes.items())
            fresh = fresh or any(k not in sizes for k in [*self._lengths, *starts])
        self._records, self._edits, self._cursor, self._lengths = records, edits, len(edits), sizes
        if fresh:
            return None
        return [[w, s, first + 1, records[w][s][first:]] for (w, s), first in starts.items()]
