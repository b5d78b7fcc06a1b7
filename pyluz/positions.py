"""Positions in an epoch's data order, so a fit can continue from the middle of an epoch.

`PositionedLoader` wraps a fit's training loader. At each epoch's start (before the loader draws
its order) it records the RNG states, so the epoch's order (a `TensorBatches` permutation, a
DataLoader's sampler permutation and worker seeds) can be drawn again later. `resume_at` makes its
next epoch draw the same order from those states, skip the batches already trained on without
loading them, and then put back the RNG states of the moment the checkpoint was taken.

Skipping costs nothing for in-memory data (`TensorBatches.batches_from`) and for a map-style
DataLoader (a batch sampler that drops the first index lists); other iterables are read and the
batches thrown away. A DataLoader's workers get the same seeds as before; batches are then
spread over them from the first unskipped batch on, which matters only when a Dataset's
`__getitem__` draws random numbers per worker.
"""

import copy
import itertools

from torch.utils.data import DataLoader, IterableDataset

from .rng import get_rng_states, set_rng_states


class SkipBatches:
    """A batch sampler that yields `sampler`'s index lists from the `start`-th on (0-based).

    The wrapped sampler is still iterated from its start, so it draws its order as before.
    """

    def __init__(self, batch_sampler, start):
        self.batch_sampler = batch_sampler
        self.start = start

    def __len__(self):
        return max(len(self.batch_sampler) - self.start, 0)

    def __iter__(self):
        return itertools.islice(iter(self.batch_sampler), self.start, None)


def _loader_options(loader):
    """The DataLoader arguments that rebuild `loader` around another batch sampler."""
    options = dict(
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        persistent_workers=loader.persistent_workers,
        pin_memory_device=getattr(loader, "pin_memory_device", ""),
    )
    if loader.num_workers > 0:
        options["prefetch_factor"] = loader.prefetch_factor
    return options


def batches_from(loader, start):
    """An iterator over `loader`'s batches from the `start`-th on (0-based), with the RNG draws of a full pass."""
    if start == 0:
        return iter(loader)
    if callable(getattr(loader, "batches_from", None)):  # TensorBatches
        return loader.batches_from(start)
    if isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset):
        skipping = DataLoader(
            loader.dataset, batch_sampler=SkipBatches(loader.batch_sampler, start), **_loader_options(loader)
        )
        return iter(skipping)
    inner = getattr(loader, "loader", None)
    if inner is not None and hasattr(loader, "device"):  # DeviceLoader: skip inside, move what is left
        outer = copy.copy(loader)
        outer.loader = _Started(batches_from(inner, start))
        return iter(outer)
    return itertools.islice(iter(loader), start, None)


class _Started:
    """An iterable over an iterator already made (so a DeviceLoader can wrap a skipping one)."""

    def __init__(self, iterator):
        self.iterator = iterator

    def __iter__(self):
        return self.iterator


class PositionedLoader:
    """A training loader that remembers where each epoch's order came from and can resume inside it.

    `ctx` is the fit's context (its loaders' own generators are part of the RNG states). Other
    attributes are the wrapped loader's, so code that inspects the loader sees the same object.

    Example:

    >>> from pyluz.data import TensorBatches
    >>> x = torch.arange(8.0)
    >>> loader = PositionedLoader(TensorBatches((x,), batch_size=2, shuffle=True))
    >>> _ = torch.manual_seed(0)
    >>> full = [b[0].tolist() for b in loader]
    >>> loader.resume_at(loader.epoch_rng, 3, get_rng_states())
    >>> [b[0].tolist() for b in loader] == full[3:]
    True
    """

    def __init__(self, loader, ctx=None):
        self.loader = loader
        self.ctx = ctx
        self.epoch_rng = None  # RNG states at the start of the current epoch's pass
        self.skipped = 0  # batches the current pass skipped (trained on before the checkpoint)
        self._resume = None

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        if name in ("loader", "ctx", "_resume"):  # not set yet (copying, unpickling)
            raise AttributeError(name)
        return getattr(self.loader, name)

    def resume_at(self, epoch_rng, consumed, rng_now):
        """Make the next pass draw its order from `epoch_rng`, skip `consumed` batches, then set `rng_now`."""
        self._resume = (epoch_rng, int(consumed), rng_now)

    def __iter__(self):
        resume, self._resume = self._resume, None
        if resume is not None:
            set_rng_states(resume[0], self.ctx)
        self.epoch_rng = get_rng_states(self.ctx)
        self.skipped = resume[1] if resume is not None else 0
        batches = batches_from(self.loader, self.skipped)
        if resume is not None:
            # The order is drawn when the first batch is asked for; after that the RNGs continue
            # from where the checkpointed run was.
            first = next(batches, _END)
            set_rng_states(resume[2], self.ctx)
            if first is _END:
                return
            yield first
        yield from batches


_END = object()


__all__ = ["PositionedLoader", "SkipBatches", "batches_from"]
