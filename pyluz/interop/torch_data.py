"""Datasets, batches and dataloaders with R torch's conventions.

* items from R are converted with R-torch rules (:func:`r_item`): doubles ->
  float32, integers -> int64;
* a batch assembled by R's ``.getbatch`` travels as :class:`RBatch` through
  torch's collate unchanged;
* ``dataloader()`` takes R's arguments (doubles for sizes, R closures for
  ``collate_fn``/``worker_init_fn``, guarded to the main thread).

Serves ``rpkg/R/torch-data.R``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data._utils.collate import default_collate, default_collate_fn_map

from ..nested import PositionalDict
from .guard import guard
from .torch_indices import to_0_based, to_int
from .torch_tensor import from_r

__all__ = [
    "RBatch",
    "RNamedTensorDataset",
    "r_item",
    "r_collate",
    "tensor_dataset",
    "dataloader",
    "iter_next",
    "subset",
]


class RBatch:
    """A batch already assembled by R's ``.getbatch``.

    ``__getitems__`` returns ``[RBatch(batch)]``; torch's ``default_collate``
    (through ``default_collate_fn_map``, registered below) and
    :func:`r_collate` unwrap it, so any DataLoader over such a dataset gets
    R's batch unchanged.
    """

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _collate_rbatch(batch, *, collate_fn_map=None):
    if len(batch) != 1:
        raise RuntimeError("a .getbatch() result can't be combined with other items")
    return batch[0].value


default_collate_fn_map[RBatch] = _collate_rbatch


def _is_number(v):
    return isinstance(v, (int, float, bool))


def r_item(obj):
    """An R dataset's item -> tensors, R-torch style (doubles -> float32, integers -> int64).

    An item that is a named list becomes a :class:`~pyluz.nested.PositionalDict`: its batches
    split by position, as luz's (``batch[[1]]`` is the input, whatever the names).
    """
    out = _r_value(obj)
    return PositionalDict(out) if type(out) is dict else out


def _r_value(obj):
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, float):
        return torch.tensor(obj, dtype=torch.float32)
    if isinstance(obj, bool):
        return torch.tensor(obj)
    if isinstance(obj, int):
        return torch.tensor(obj, dtype=torch.int64)
    if isinstance(obj, np.ndarray):
        return from_r(obj)
    if isinstance(obj, dict):
        return {k: _r_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if obj and all(_is_number(v) for v in obj):
            return from_r(list(obj))  # an R atomic vector
        return [_r_value(v) for v in obj]
    return obj


def r_collate(batch):
    """Default collate that passes :class:`RBatch` (from ``.getbatch``) through."""
    if isinstance(batch, RBatch):
        return batch.value
    if isinstance(batch, list) and len(batch) == 1 and isinstance(batch[0], RBatch):
        return batch[0].value
    return default_collate(batch)


class RNamedTensorDataset(TensorDataset):
    """``TensorDataset`` whose items are dicts keyed by ``names`` (named R args)."""

    def __init__(self, *tensors, names=()):
        super().__init__(*tensors)
        self.names = list(names)

    def __getitem__(self, index):
        return PositionalDict((n, t[index]) for n, t in zip(self.names, self.tensors))


def tensor_dataset(tensors, names=None):
    tensors = [t if isinstance(t, torch.Tensor) else from_r(t) for t in tensors]
    if names and any(names):
        names = [n if n else f"V{i + 1}" for i, n in enumerate(names)]
        return RNamedTensorDataset(*tensors, names=names)
    return TensorDataset(*tensors)


def dataloader(
    dataset,
    batch_size=1,
    shuffle=False,
    sampler=None,
    batch_sampler=None,
    num_workers=0,
    collate_fn=None,
    pin_memory=False,
    drop_last=False,
    timeout=0,
    worker_init_fn=None,
    r_reseed=None,
    **kwargs,
):
    """A ``torch.utils.data.DataLoader`` built from R arguments."""
    batch_size = to_int(batch_size) if batch_size is not None else None
    num_workers = to_int(num_workers)
    timeout = float(timeout) if timeout and timeout > 0 else 0
    if collate_fn is None:
        collate_fn = r_collate if getattr(dataset, "has_getbatch", False) else None
    elif not isinstance(collate_fn, type) and getattr(collate_fn, "__module__", "") == "rpytools.call":
        collate_fn = guard(collate_fn, "collate_fn")
    if worker_init_fn is not None and getattr(worker_init_fn, "__module__", "") == "rpytools.call":
        worker_init_fn = guard(worker_init_fn, "worker_init_fn")
    if num_workers > 0 and r_reseed is not None and getattr(dataset, "__pyluz_r__", False):
        user_init = worker_init_fn
        reseed = guard(r_reseed, "worker reseed")

        def worker_init_fn(worker_id):
            reseed(float(torch.initial_seed() % 2**31))
            if user_init is not None:
                user_init(worker_id)

    if "prefetch_factor" in kwargs and kwargs["prefetch_factor"] is not None:
        kwargs["prefetch_factor"] = to_int(kwargs["prefetch_factor"])
    if sampler is not None or batch_sampler is not None:
        shuffle = None if shuffle is False else shuffle
    if batch_sampler is not None:
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            collate_fn=collate_fn,
            pin_memory=bool(pin_memory),
            timeout=timeout,
            worker_init_fn=worker_init_fn,
            **kwargs,
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=bool(pin_memory),
        drop_last=bool(drop_last),
        timeout=timeout,
        worker_init_fn=worker_init_fn,
        **kwargs,
    )


_DONE = object()


def iter_next(it):
    """[True, value] or [False, None] when the iterator is exhausted."""
    v = next(it, _DONE)
    if v is _DONE:
        return [False, None]
    return [True, v]


def subset(dataset, indices):
    """``dataset_subset()`` with 1-based indices."""
    idx = indices if isinstance(indices, (list, tuple)) else [indices]
    n = len(dataset)
    return torch.utils.data.Subset(dataset, [to_0_based(i, size=n) for i in idx])
