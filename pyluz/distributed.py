"""Distributed data parallel. Everything DDP-specific in the engine lives in this file.

When is it on?
    When the script runs under ``torchrun`` with more than one process (env ``WORLD_SIZE > 1``), or
    with ``Accelerator(strategy="ddp")``. Without a launcher, ``strategy="ddp"`` runs a process group
    of one (useful for debugging); a process group the user created (``torch.multiprocessing.spawn``
    plus ``init_process_group``) is used as is.

What the engine does (all from ``Accelerator.prepare``, so a hand-written loop gets the same)::

    acc = pyluz.Accelerator(strategy="ddp")
    model, opt, train = acc.prepare(model, opt, train)   # DDP model, this rank's shard of the data
    for epoch in range(epochs):
        pyluz.distributed.set_epoch(train, epoch)         # fit does this for you
        ...

1. Joins the default process group once (nccl on CUDA, gloo on CPU; env ``LOCAL_RANK`` picks the
   CUDA device; timeout ``PYLUZ_DDP_TIMEOUT`` seconds, default 600). A group pyluz created is
   destroyed when the process exits (or by :func:`teardown`); a user's group is left alone.
2. Wraps the placed model in :class:`DDP` (a ``DistributedDataParallel`` whose unknown public
   attributes and ``state_dict`` are the user's module's, so ``ctx.model.loss``, custom methods and
   checkpoints keep working). Optimizers need no change: DDP shares the parameters. ``Fitted.model``
   is the unwrapped module.
3. Shards the data. The rule is ``DistributedSampler``'s for every kind of input: each epoch has
   one global order (shared by all ranks), cut to a multiple of the world size ``N`` when
   ``drop_last`` is set and otherwise padded by repeating its first rows; rank ``r`` takes rows
   ``r, r + N, r + 2N, ...`` and batches them by the per-rank ``batch_size`` ``b``. So the k-th
   batches of the ranks together are exactly the k-th batch of one process with batch ``N * b``,
   and (DDP averaging gradients of mean-reduced losses) N ranks train like one process with that
   global batch; the records match too. Only padding (``drop_last=False`` and a row count that is
   not a multiple of ``N``, e.g. validation data) repeats a few rows and makes metrics approximate.

   - In-memory data (``data.TensorBatches``) becomes :class:`ShardedTensorBatches`: the epoch's
     order is drawn exactly as one process draws it (same torch RNG use) and rank 0's is broadcast.
   - A ``DataLoader`` (built by pyluz from a Dataset, or passed by the user) whose sampler is the
     plain sequential/random one is rebuilt with a ``DistributedSampler`` (same batch size,
     ``drop_last``, workers, collate_fn, ...). A shuffled one gets a :class:`OneProcessOrderSampler`:
     the epoch's order is drawn as one process's ``RandomSampler`` draws it (same torch RNG use)
     and rank 0's is broadcast, so it too trains like one process with the global batch and the
     same seed. A DataLoader that already has a ``DistributedSampler`` is used as is (its own
     order, which one process reads only through that sampler).
   - Anything else (custom samplers or batch samplers, IterableDatasets, DataLoader subclasses,
     plain iterables) is used as is, with a warning: shard it yourself with :func:`rank` and
     :func:`world_size`. Every rank must yield the same number of batches.
   - ``evaluate()`` and ``predict()`` are not sharded: every rank runs the whole data and gets the
     whole result.
4. Metric state is summed across ranks (``Metric.reduce_state``) at the end of each train/valid
   phase, before ``compute()``: records are the global metrics and identical on every rank. Metrics
   written in R, whose state can't be summed, update on the global batch instead (:func:`gather_batch`).
   Mid-epoch progress shows rank 0's own running values (no collective per refresh).
5. Progress prints on rank 0 only, and ``Fitted.save`` writes on rank 0 only; callbacks that write
   files or print check :func:`is_main_process`.

Seed every rank the same (``torch.manual_seed``) before ``fit``: a ``valid_data`` fraction is split
with torch's RNG on each rank (pyluz warns when the ranks' seeds differ); a ``HeldOut`` fraction
with its own sampler (from R: ``sample.int()``, so ``set.seed()`` every rank the same; not checked).

A custom ``step()`` must run the forward pass through ``ctx.model(...)`` (the DDP wrapper) for the
gradients to be averaged; calling ``self(...)`` or a submodule directly trains each rank on its own
shard. Collectives must match on every rank: callbacks that stop training must decide the same on
every rank (records are identical; for local values use :func:`any_rank`).
"""

import atexit
import datetime
import math
import os
import re
import warnings

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

from . import nested
from .checks import check_int
from .data import TensorBatches, draw_seed

DEFAULT_TIMEOUT_S = 600
_created_group = False  # True when pyluz initialised the default process group (it then destroys it)
_exit_hook = False  # teardown() is registered with atexit once


# -- who am I --------------------------------------------------------------------------------


def is_initialized():
    """Whether the default process group exists."""
    return dist.is_available() and dist.is_initialized()


def rank():
    """This process's rank: from the process group, else env ``RANK`` (set by torchrun), else 0."""
    return dist.get_rank() if is_initialized() else int(os.environ.get("RANK", 0))


def world_size():
    """Number of processes: from the process group, else env ``WORLD_SIZE``, else 1."""
    return dist.get_world_size() if is_initialized() else int(os.environ.get("WORLD_SIZE", 1))


_rank, _world_size = rank, world_size  # for functions whose arguments have these names


def local_rank():
    """The rank on this machine (env ``LOCAL_RANK``, set by torchrun), else 0."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main_process():
    """True on rank 0 (and in every non-distributed run): the process that prints, logs and saves."""
    return rank() == 0


def launched():
    """True when a launcher (torchrun) started several processes."""
    return int(os.environ.get("WORLD_SIZE", 1)) > 1


def requested(strategy):
    """Whether an Accelerator with this `strategy` trains with DDP."""
    return strategy == "ddp" or launched()


# -- device and process group ----------------------------------------------------------------


def pick_device(cpu=False, cuda_index=None):
    """The device of this rank: ``cuda:LOCAL_RANK`` (or `cuda_index`) when CUDA is usable, else CPU.

    (MPS is skipped: no collective backend supports it.)
    """
    if cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    if cuda_index is None:
        cuda_index = local_rank() % torch.cuda.device_count()
    return torch.device("cuda", cuda_index)


def timeout_seconds():
    return float(os.environ.get("PYLUZ_DDP_TIMEOUT", DEFAULT_TIMEOUT_S))


def init(device):
    """Join the default process group unless it exists; returns True when this call created it.

    nccl for a CUDA device, gloo otherwise. Under torchrun the group is read from the environment
    (``env://``); without a launcher it is a group of one process.
    """
    global _created_group, _exit_hook
    if is_initialized():
        return False
    if not dist.is_available():
        raise RuntimeError("`strategy='ddp'` needs torch.distributed, which this torch build lacks.")
    device = torch.device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=timeout_seconds())
    if all(k in os.environ for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")):
        dist.init_process_group(backend, timeout=timeout)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
    if not _exit_hook:
        atexit.register(teardown)
    _created_group = _exit_hook = True
    return True


def teardown():
    """Destroy the process group if pyluz created it (also run at exit). A user's group stays."""
    global _created_group
    if _created_group and is_initialized():
        dist.destroy_process_group()
    _created_group = False


def prepare(model, loaders, device):
    """What ``Accelerator.prepare`` does under DDP: join the group, wrap the model, shard the loaders.

    Every rank must call it at the same point (it runs collectives).
    """
    init(device)
    warn_if_seeds_differ()
    if model is not None:
        model = wrap_model(model, device)
    return model, [shard_loader(loader) for loader in loaders]


def warn_if_seeds_differ():
    """Warn (on rank 0) when the ranks' torch seeds differ: `valid_data=<fraction>` then splits
    differently on each rank, and the ranks' runs cannot be reproduced as one process."""
    if world_size() == 1:
        return
    seed = torch.initial_seed() % 2**62
    spread = all_reduce_max(torch.tensor([seed, -seed], dtype=torch.int64))
    if spread[0] != -spread[1] and is_main_process():
        warnings.warn(
            "DDP: the ranks were seeded differently; call torch.manual_seed(<same seed>) on every rank "
            "before fit, so a `valid_data` fraction splits the same rows everywhere.",
            RuntimeWarning,
            stacklevel=2,
        )


# -- the model -------------------------------------------------------------------------------


class DDP(DistributedDataParallel):
    """``DistributedDataParallel`` whose ``state_dict()`` / ``load_state_dict()`` are the module's (no
    ``module.`` prefix), so a checkpoint written from ``ctx.model`` loads into ``fitted.model``.

    The engine resolves the module's own methods (``loss``, ``step``, ``backward``, ``predict``) on the
    unwrapped module; code that needs them from ``ctx.model`` uses ``pyluz.distributed.unwrap``. Only a
    forward pass through the wrapper, ``ctx.model(x)``, averages gradients.
    """

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


def wrap_model(model, device):
    """The model wrapped in :class:`DDP` (after placement); a model with nothing to train stays as is."""
    if isinstance(model, DistributedDataParallel):
        return model
    if not any(p.requires_grad for p in model.parameters()):
        return model
    device = torch.device(device)
    device_ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=device_ids)


def unwrap(model):
    """The user's module inside DDP / DataParallel wrappers (anything else is returned unchanged)."""
    while isinstance(model, (DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
    return model


def is_ddp(model):
    """Whether `model` is DDP-wrapped, i.e. the run is sharded and metric state must be reduced."""
    return isinstance(model, DistributedDataParallel)


# -- the data --------------------------------------------------------------------------------


def shard_sizes(n, world, drop_last):
    """(rows used per epoch, rows per rank) under the DistributedSampler rule."""
    per_rank = n // world if drop_last else math.ceil(n / world)
    return per_rank * world, per_rank


def rank_share(order, rank, world, drop_last):
    """Rank `rank`'s rows of an epoch's global `order`: cut or padded (by repeating it) to a multiple
    of `world`, as DistributedSampler does, then every `world`-th row from `rank` on."""
    n = order.shape[0]
    total, _ = shard_sizes(n, world, drop_last)
    if total > n:
        order = order.repeat(math.ceil(total / n))
    return order[:total][rank::world]


class OneProcessOrderSampler(DistributedSampler):
    """A DistributedSampler whose shuffled epoch order is the one a single process would read.

    Each epoch it draws a permutation exactly as ``RandomSampler`` does in one process (a seed from
    torch's RNG, or the loader's generator), takes rank 0's (broadcast, so the ranks agree), and
    gives this rank its share (:func:`rank_share`). So a shuffled map-style Dataset trained on
    N ranks with batch ``b`` reads the batches of one process with batch ``N * b`` and the same
    seed: weights and records match that run. ``set_epoch`` is accepted and changes nothing (the
    RNG moves on by itself, as in one process).

    Example (one process of one rank reads RandomSampler's order)::

        torch.manual_seed(0); one = list(RandomSampler(range(6)))
        torch.manual_seed(0); assert list(OneProcessOrderSampler(range(6), 1, 0, drop_last=False)) == one
    """

    def __init__(self, dataset, num_replicas, rank, drop_last=False, generator=None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, drop_last=drop_last)
        self.generator = generator

    def __iter__(self):
        n = len(self.dataset)
        generator = self.generator
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(draw_seed())
        order = torch.randperm(n, generator=generator)
        if self.generator is not None:
            torch.randperm(n, generator=self.generator)  # RandomSampler's draw for its (empty) tail
        if self.num_replicas > 1 and is_initialized():
            order = broadcast_from_main(order)
        return iter(rank_share(order, self.rank, self.num_replicas, self.drop_last).tolist())


class ShardedTensorBatches(TensorBatches):
    """This rank's batches of in-memory tensors (see the module docstring for the rule).

    Example (what rank 1 of 2 sees with per-rank batches of 2)::

        list(ShardedTensorBatches(TensorBatches([torch.arange(8)], batch_size=2), rank=1, world_size=2))
        # [[tensor([1, 3])], [tensor([5, 7])]]
    """

    def __init__(self, batches, rank, world_size):
        super().__init__(batches.tensors, batches.batch_size, batches.shuffle, batches.drop_last, batches.generator)
        self.world_size = check_int(world_size, "world_size", min_value=1)
        self.rank = check_int(rank, "rank", min_value=0, max_value=self.world_size - 1)

    def __len__(self):
        per_rank = shard_sizes(self.n, self.world_size, self.drop_last)[1]
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)

    def rows(self):
        """This rank's row indices for the next epoch, in batch order (draws the epoch's order)."""
        order = self._order()  # the torch RNG is used exactly as one process uses it
        if order is None:
            order = torch.arange(self.n)
        elif self.world_size > 1 and is_initialized():
            order = broadcast_from_main(order)  # ranks agree even if their RNGs differ
        return rank_share(order, self.rank, self.world_size, self.drop_last)

    def __iter__(self):
        rows = self.rows().to(nested.tensors(self.tensors)[0].device)
        m, bs = rows.shape[0], self.batch_size
        stop = m - m % bs if self.drop_last else m
        for start in range(0, stop, bs):
            yield self.take(rows[start : start + bs])

    def subset(self, indices):
        return ShardedTensorBatches(super().subset(indices), self.rank, self.world_size)


def distributed_sampler(loader):
    """The DistributedSampler of a DataLoader (also inside a DeviceLoader or as the batch sampler's), or None."""
    loader = getattr(loader, "loader", loader)  # accelerator.DeviceLoader
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if isinstance(sampler, DistributedSampler):
            return sampler
    return None


def set_epoch(loader, epoch):
    """Call ``set_epoch(epoch)`` on the loader's DistributedSampler, if it has one (fit does it per epoch)."""
    sampler = distributed_sampler(loader)
    if sampler is not None:
        sampler.set_epoch(epoch)


def _rebuildable(loader):
    """A DataLoader with the default sampler and batch sampler, which a DistributedSampler can replace."""
    if type(loader) is not DataLoader or isinstance(loader.dataset, IterableDataset) or loader.batch_size is None:
        return False
    sampler = loader.sampler
    plain_sampler = type(sampler) is SequentialSampler or (
        type(sampler) is RandomSampler and not sampler.replacement and sampler._num_samples is None
    )
    return plain_sampler and type(loader.batch_sampler) is BatchSampler


def _rebuild(loader, rank, world):
    """The same DataLoader with a DistributedSampler (shuffled: a `OneProcessOrderSampler`)."""
    if isinstance(loader.sampler, RandomSampler):
        sampler = OneProcessOrderSampler(loader.dataset, world, rank, loader.drop_last, loader.sampler.generator)
    else:
        sampler = DistributedSampler(
            loader.dataset, num_replicas=world, rank=rank, shuffle=False, drop_last=loader.drop_last
        )
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor,
        persistent_workers=loader.persistent_workers,
        pin_memory_device=loader.pin_memory_device,
        in_order=loader.in_order,
    )


def shard_loader(loader, rank=None, world_size=None):
    """This rank's share of `loader` (rank and world size default to this process's)."""
    rank = _rank() if rank is None else rank
    world = _world_size() if world_size is None else world_size
    if loader is None or isinstance(loader, ShardedTensorBatches):
        return loader
    if isinstance(loader, TensorBatches):
        return ShardedTensorBatches(loader, rank, world)
    if distributed_sampler(loader) is not None:
        return loader
    if isinstance(loader, DataLoader) and _rebuildable(loader):
        return _rebuild(loader, rank, world)
    if rank == 0:
        warnings.warn(
            f"DDP: the {type(loader).__name__} is used as is, so every rank reads all of it. Shard it "
            "yourself (pyluz.distributed.rank() / world_size(), or a DistributedSampler); every rank "
            "must yield the same number of batches.",
            RuntimeWarning,
            stacklevel=2,
        )
    return loader


# -- collectives -----------------------------------------------------------------------------


def _collective_device():
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(tensor):
    """Sum `tensor` over all ranks in place and return it (moved to the backend's device and back)."""
    if not is_initialized() or dist.get_world_size() == 1:
        return tensor
    device = _collective_device()
    if tensor.device == device:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor
    moved = tensor.to(device)
    dist.all_reduce(moved, op=dist.ReduceOp.SUM)
    tensor.copy_(moved)
    return tensor


def all_reduce_max(tensor):
    """Elementwise maximum of `tensor` over all ranks (a new tensor)."""
    if not is_initialized() or dist.get_world_size() == 1:
        return tensor
    moved = tensor.to(_collective_device(), copy=True)
    dist.all_reduce(moved, op=dist.ReduceOp.MAX)
    return moved.to(tensor.device)


def broadcast_from_main(tensor):
    """Rank 0's value of `tensor` on every rank (a new tensor on `tensor`'s device)."""
    if not is_initialized() or dist.get_world_size() == 1:
        return tensor
    moved = tensor.to(_collective_device(), copy=True)
    dist.broadcast(moved, src=0)
    return moved.to(tensor.device)


def any_rank(flag):
    """True on every rank when `flag` is true on at least one (for decisions such as stopping)."""
    t = torch.tensor(1 if flag else 0, dtype=torch.int64)
    return bool(all_reduce_sum(t) > 0)


def barrier():
    """Wait for every rank (no-op without a process group)."""
    if is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


# -- a failure on one rank --------------------------------------------------------------------
# A rank that fails leaves its error in the rendezvous store (torchrun's agent holds it, so it outlives
# the rank); the other ranks, whose next collective breaks when that rank's process ends, read it and
# fail with it instead of gloo's "Connection closed by peer". Keys carry a per-process fit counter, so
# a failure caught by the script in one fit is not reported again by a later one.

_fits = 0


def begin_fit():
    """Count a fit (every rank runs the same fits, so the counter agrees across ranks)."""
    global _fits
    _fits += 1


def _failure_key(r):
    return f"pyluz/failed/{_fits}/{r}"


def _store():
    if not is_initialized() or dist.get_world_size() == 1:
        return None
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # a user's group without a store
        return None


def report_failure(message):
    """Leave this rank's error message where the other ranks can read it (best effort)."""
    store = _store()
    if store is not None:
        try:
            store.set(_failure_key(rank()), message)
        except Exception:  # the store is gone too: nothing better to do
            pass


# What a collective raises when a peer is gone: gloo's and nccl's RuntimeErrors, torch's DistError.
_BROKEN = re.compile(r"gloo|nccl|NCCL|Connection (reset|closed)|timed out|Timeout|peer")


def broken_collective(error):
    """Whether `error` (or what it wraps) looks like a collective that broke because a peer ended."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, dist.DistError) or _BROKEN.search(str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def peer_failure():
    """``(rank, message)`` of another rank that reported a failure in this fit, else None."""
    store = _store()
    if store is None:
        return None
    for r in range(dist.get_world_size()):
        if r == rank():
            continue
        try:
            if store.check([_failure_key(r)]):
                return r, store.get(_failure_key(r)).decode("utf-8", "replace")
        except Exception:
            return None
    return None


def gather_batch(value):
    """The global batch, in one process's row order, from every rank's share of it.

    `value` is this rank's tensor (or a list / tuple / dict of tensors) for the current batch; the
    result is what one process with the global batch would hold: rank ``r``'s row ``i`` is global row
    ``i * N + r`` (the sharding rule above), so the ranks' rows are interleaved, and ranks with fewer
    rows (a last batch that does not split evenly) are padded for the collective and trimmed after.
    Every rank gets the same result. Cost: two ``all_gather`` calls whatever the number of tensors
    (the row counts, then all the tensors' bytes in one buffer), i.e. ``N`` times the batch's bytes
    received per rank.
    """
    if not is_initialized() or dist.get_world_size() == 1:
        return value
    leaves = []
    template = _leaves(value, leaves)
    gathered = iter(_gather_rows(leaves))
    return _rebuild_tree(template, gathered)


def _leaves(value, out):
    """`value` with every tensor replaced by None, the tensors appended to `out` (in a fixed order)."""
    if isinstance(value, torch.Tensor):
        out.append(value)
        return None
    if isinstance(value, (list, tuple)):
        return type(value)(_leaves(v, out) for v in value)
    if isinstance(value, dict):
        keys = list(value)
        try:
            keys = sorted(keys)
        except TypeError:
            pass
        return {k: _leaves(value[k], out) for k in keys}
    raise TypeError(
        f"DDP: can't gather a batch value of type {type(value).__name__} across processes; "
        "predictions and targets must be tensors (or lists / dicts of tensors)."
    )


def _rebuild_tree(template, gathered):
    if template is None:
        return next(gathered)
    if isinstance(template, (list, tuple)):
        return type(template)(_rebuild_tree(v, gathered) for v in template)
    return {k: _rebuild_tree(v, gathered) for k, v in template.items()}


def _gather_rows(tensors):
    """Each tensor's rows from every rank, interleaved (see `gather_batch`), in two collectives."""
    world = dist.get_world_size()
    device = _collective_device()
    moved = [t.detach().to(device) for t in tensors]
    moved = [t.reshape(1) if t.dim() == 0 else t for t in moved]
    counts = torch.tensor([t.shape[0] for t in moved], dtype=torch.int64, device=device)
    all_counts = [torch.empty_like(counts) for _ in range(world)]
    dist.all_gather(all_counts, counts)
    all_counts = torch.stack(all_counts).cpu()  # [rank, tensor]
    longest = all_counts.max(dim=0).values.tolist()
    chunks = []
    for t, rows in zip(moved, longest, strict=True):
        if t.shape[0] < rows:  # pad to the longest rank's rows, so every rank sends as many bytes
            t = torch.cat([t, t.new_zeros((rows - t.shape[0], *t.shape[1:]))])
        chunks.append(t.contiguous().view(torch.uint8).reshape(-1))  # any dtype, bool included, as bytes
    buffer = torch.cat(chunks)
    parts = [torch.empty_like(buffer) for _ in range(world)]
    dist.all_gather(parts, buffer)
    out, offset = [], 0
    for j, (t, original, rows) in enumerate(zip(moved, tensors, longest, strict=True)):
        size = chunks[j].numel()
        shape = (rows, *t.shape[1:])
        per_rank = [p[offset : offset + size].view(t.dtype).reshape(shape) for p in parts]
        offset += size
        stacked = torch.stack(per_rank, dim=1)  # [row i, rank r, ...]: global row i * N + r
        keep = torch.arange(rows).unsqueeze(1) < all_counts[:, j].unsqueeze(0)
        out.append(stacked[keep.to(stacked.device)].to(original.device))
    return out


def reduce_metrics(metrics):
    """Sum the state of each metric across ranks, so ``compute()`` gives the global value."""
    for metric in metrics:
        metric.reduce_state(all_reduce_sum)
