"""Walking nested values: tensors inside tuples, namedtuples, lists and dicts.

Batches, predictions and model inputs are tensors or containers of them. Every part of the
engine that looks inside one (device moves, detaching, stacking predictions, the example rows
of an exported model) walks it with the functions here, so all agree on what a container is:
`list`, `tuple`, a namedtuple (rebuilt with its fields) and any `dict` (keys kept, in order).
Everything else is a leaf.

Example:

>>> import collections, torch
>>> Pair = collections.namedtuple("Pair", "x y")
>>> batch = {"a": Pair(torch.ones(2), torch.zeros(2)), "b": [torch.ones(1), "tag"]}
>>> map_tensors(lambda t: t * 2, batch)["a"].x
tensor([2., 2.])
>>> len(tensors(batch))
3
"""

import torch


class PositionalDict(dict):
    """A dict whose entries also count by position: an R named list (R front end's batches).

    luz splits a batch by position (`batch[[1]]` is the input whatever the names), so
    `context.split_batch` does for this type; `rebuild` keeps the type through device moves.
    """

    __slots__ = ()


def is_namedtuple(value):
    """Whether `value` is a namedtuple instance (a tuple with `_fields`)."""
    return isinstance(value, tuple) and hasattr(value, "_fields")


def rebuild(value, items):
    """A container of `value`'s kind holding `items` (for a dict: values in its key order)."""
    if isinstance(value, dict):
        out = dict(zip(value.keys(), items, strict=True))
        return PositionalDict(out) if isinstance(value, PositionalDict) else out
    if is_namedtuple(value):
        return type(value)(*items)
    if isinstance(value, tuple):
        return tuple(items)
    return list(items)


def children(value):
    """The direct children of a container (dict values in key order), or None for a leaf."""
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


def map_structure(fn, value):
    """`value` with `fn(leaf)` in place of every leaf (tensors and anything else)."""
    parts = children(value)
    if parts is None:
        return fn(value)
    return rebuild(value, [map_structure(fn, v) for v in parts])


def map_tensors(fn, value):
    """`value` with `fn(t)` in place of every tensor `t`; other leaves are kept."""
    if isinstance(value, torch.Tensor):  # the common case first: a batch that is one tensor
        return fn(value)
    return map_structure(lambda leaf: fn(leaf) if isinstance(leaf, torch.Tensor) else leaf, value)


def tensors(value):
    """Every tensor inside `value`, in walking order."""
    if isinstance(value, torch.Tensor):
        return [value]
    parts = children(value)
    return [t for v in parts for t in tensors(v)] if parts is not None else []


def to_device(value, device, non_blocking=True):
    """Every tensor inside `value` moved to `device`."""
    return map_tensors(lambda t: t.to(device, non_blocking=non_blocking), value)


def detach(value):
    """Every tensor inside `value` detached from the autograd graph."""
    return map_tensors(torch.Tensor.detach, value)


def same_structure(values):
    """Whether every value in `values` has the structure of the first, with tensors at the same places."""
    first = values[0]

    def matches(a, b):
        if isinstance(a, torch.Tensor):
            return isinstance(b, torch.Tensor)
        parts_a, parts_b = children(a), children(b)
        if parts_a is None or parts_b is None or type(a) is not type(b) or len(parts_a) != len(parts_b):
            return False
        if isinstance(a, dict) and list(a) != list(b):
            return False
        return all(matches(x, y) for x, y in zip(parts_a, parts_b, strict=True))

    return (
        all(matches(first, v) for v in values[1:])
        and bool(tensors(first))
        and all(isinstance(leaf, torch.Tensor) for leaf in _leaves(first))
    )


def _leaves(value):
    parts = children(value)
    return [value] if parts is None else [leaf for v in parts for leaf in _leaves(v)]


def concat(values):
    """Concatenate a list of same-shaped structures along dim 0, leaf by leaf.

    Scalar tensors are stacked. A list whose items differ in structure, or hold anything but
    tensors, is returned unchanged.

    >>> concat([(torch.ones(2, 1), torch.zeros(2)), (torch.ones(1, 1), torch.zeros(1))])[0].shape
    torch.Size([3, 1])
    """
    if not values or not same_structure(values):
        return values

    def join(parts):
        first = parts[0]
        if isinstance(first, torch.Tensor):
            return torch.cat(parts, dim=0) if first.dim() > 0 else torch.stack(parts)
        return rebuild(first, [join([children(p)[i] for p in parts]) for i in range(len(children(first)))])

    return join(values)


__all__ = [
    "is_namedtuple",
    "rebuild",
    "children",
    "map_structure",
    "map_tensors",
    "tensors",
    "to_device",
    "detach",
    "same_structure",
    "concat",
]
