"""Python classes whose methods are R closures (R's ``nn_module()`` / ``dataset()``).

How an R-defined class looks from Python
-----------------------------------------
``nn_module("Net", initialize = ..., forward = ..., loss = ...)`` in R creates,
lazily, one Python class per R generator with :func:`make_class`:

* ``class Net(RModule)`` where ``RModule`` subclasses ``torch.nn.Module``;
  an R ``inherit =`` generator becomes the Python base class, a Python class
  passed as ``inherit =`` is mixed in after ``RModule``.
* every public R method (except ``initialize``) becomes an *instance*
  attribute holding a guarded R closure (:func:`pyluz.interop.guard.guard`),
  so ``m.forward`` / ``m.loss`` / ``m.step`` / ``m.set_optimizers`` exist
  exactly when R defined them; the class also gets a stub of the same name so
  class-level ``hasattr(Net, "loss")`` works before instantiation;
* ``Net(*args, **kwargs)`` from Python runs the R ``initialize`` (through the
  class attribute ``_r_init``); from R the generator does the same without
  converting its arguments through Python;
* detection: ``isinstance(m, RObject)`` or ``getattr(m, "__pyluz_r__", False)``;
  ``type(m)._r_method_names`` lists the R methods;
* ``copy.deepcopy`` works (the R side is cloned through ``_r_clone``);
  pickling raises a clear ``TypeError`` (R closures can't be pickled, e.g. by
  spawn/forkserver DataLoader workers).

``dataset(...)`` likewise gives ``class <name>(RDataset)`` (a
``torch.utils.data.Dataset``): ``ds[i]`` calls R's ``.getitem(i + 1)``
(1-based), ``len(ds)`` calls ``.length()``; if ``.getbatch`` is defined,
``ds.__getitems__(indices)`` returns ``[RBatch(batch)]``, which torch's
default collate (and :func:`r_collate`) unwraps: any DataLoader over such a
dataset gets R's batch unchanged.  Items are converted
to tensors with R-torch rules (:func:`r_item`).
"""

from __future__ import annotations

import copy
import itertools
import weakref

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset
from torch.utils.data._utils.collate import default_collate, default_collate_fn_map

from .guard import guard
from .rnn import coerce_init
from .rops import from_r, to_int

__all__ = [
    "RObject", "RModule", "RDataset", "RIterableDataset", "RBatch", "RNamedTensorDataset",
    "make_class", "new_instance", "attach", "weak", "r_item", "r_collate",
    "tensor_dataset", "dataloader", "iter_next", "is_r_object", "call_super",
]

_keys = itertools.count(1)

# R method names (datasets) -> Python instance attribute names
_DATASET_ATTRS = {".getitem": "_r_getitem", ".length": "_r_length",
                  ".getbatch": "_r_getbatch", ".iter": "_r_iter"}


class RObject:
    """Mixin for Python objects backed by an R-side state (R package pyluz)."""

    __pyluz_r__ = True
    _r_init = None            # guarded R fn (self, key, args, kwargs)
    _r_clone = None           # guarded R fn (new, old, new_key)
    _r_method_names = frozenset()
    _r_py_base = None         # Python class given as `inherit =`

    def _r_base_init(self):
        raise NotImplementedError

    def __reduce_ex__(self, protocol):
        raise TypeError(
            f"{type(self).__name__} is defined in R (pyluz) and can't be pickled: R closures don't "
            "survive pickling. Use num_workers=0 or the default 'fork' start method for "
            "DataLoader workers, and save weights with state_dict() instead of the whole object.")

    def __deepcopy__(self, memo):
        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        skip = {_DATASET_ATTRS.get(n, n) for n in cls._r_method_names} | {"_r_key"}
        for k, v in self.__dict__.items():
            if k in skip:
                continue
            object.__setattr__(new, k, copy.deepcopy(v, memo))
        key = next(_keys)
        object.__setattr__(new, "_r_key", key)
        cls._r_clone(new, self, key)
        return new


def _stub(name, attr):
    def method(self, *args, **kwargs):
        fn = self.__dict__.get(attr)
        if fn is None:
            raise AttributeError(f"{type(self).__name__}.{name} is not initialised (R method)")
        return fn(*args, **kwargs)
    method.__name__ = attr if attr.isidentifier() else "r_method"
    method.__pyluz_r_stub__ = True
    return method


class RModule(RObject, nn.Module):
    """``torch.nn.Module`` whose methods are R closures (``nn_module()`` in R)."""

    def _r_base_init(self):
        nn.Module.__init__(self)

    def __init__(self, *args, **kwargs):
        self._r_base_init()
        key = next(_keys)
        self.__dict__["_r_key"] = key
        type(self)._r_init(self, key, list(args), kwargs)

    def __setstate__(self, state):  # pragma: no cover - pickling is refused
        raise TypeError("R-defined modules can't be unpickled")


class _RData(RObject):
    """What R datasets share: no Python base to initialize; the R side sets up its state."""

    def _r_base_init(self):
        pass

    def __init__(self, *args, **kwargs):
        key = next(_keys)
        self.__dict__["_r_key"] = key
        type(self)._r_init(self, key, list(args), kwargs)


class RDataset(_RData, Dataset):
    """``torch.utils.data.Dataset`` whose ``.getitem``/``.length`` are R closures."""

    has_getbatch = False

    def __getitem__(self, i):
        if isinstance(i, slice):
            i = list(range(*i.indices(len(self))))
        if isinstance(i, (list, tuple, torch.Tensor, np.ndarray)):
            items = self.__getitems__(i)
            return items[0].value if items and isinstance(items[0], RBatch) else items
        fn = self.__dict__.get("_r_getitem")
        if fn is None:
            raise NotImplementedError(f"{type(self).__name__} defines no .getitem method")
        return r_item(fn(int(i) + 1))

    def __len__(self):
        fn = self.__dict__.get("_r_length")
        if fn is None:
            raise TypeError(f"{type(self).__name__} defines no .length method")
        n = fn()
        return int(n)

    def __getitems__(self, indices):
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        idx = [int(i) + 1 for i in indices]
        fn = self.__dict__.get("_r_getbatch")
        if fn is not None:
            return [RBatch(r_item(fn(idx)))]
        get = self.__dict__.get("_r_getitem")
        return [r_item(get(i)) for i in idx]


class RIterableDataset(_RData, IterableDataset):
    """``IterableDataset`` whose ``.iter()`` is an R closure returning an R
    function that yields one item per call (``NULL`` when exhausted)."""

    def __iter__(self):
        fn = self.__dict__.get("_r_iter")
        if fn is None:
            raise NotImplementedError(f"{type(self).__name__} defines no .iter method")
        nxt = guard(fn(), "iterable_dataset iterator")
        while True:
            v = nxt()
            if v is None:
                return
            yield r_item(v)

    def __len__(self):
        fn = self.__dict__.get("_r_length")
        if fn is None:
            raise TypeError(f"{type(self).__name__} has no .length method")
        return int(fn())


_BASES = {"module": RModule, "dataset": RDataset, "iterable_dataset": RIterableDataset}


def make_class(kind, name, method_names, r_init, r_clone, parent=None, py_base=None):
    """Create the Python class of one R generator.

    ``parent`` is the Python class of the R generator given as ``inherit``;
    ``py_base`` a plain Python class given as ``inherit``.
    """
    base = _BASES[kind]
    if parent is not None:
        bases = (parent,)
    elif py_base is not None:
        if not (isinstance(py_base, type) and issubclass(py_base, base.__mro__[2])):
            raise TypeError(f"inherit= must be a subclass of {base.__mro__[2].__name__}")
        bases = (base, py_base)
    else:
        bases = (base,)
    ns = {
        "__module__": __name__,
        "__qualname__": str(name),
        "_r_init": staticmethod(guard(r_init, f"{name}.initialize")),
        "_r_clone": staticmethod(guard(r_clone, f"{name}.clone")),
        "_r_method_names": frozenset(method_names) | (parent._r_method_names if parent else frozenset()),
    }
    if py_base is not None:
        ns["_r_py_base"] = py_base
    for m in method_names:
        attr = _DATASET_ATTRS.get(m, m)
        if kind != "module" and m in _DATASET_ATTRS:
            continue
        if not attr.isidentifier() or attr.startswith("__"):
            continue
        ns[attr] = _stub(m, attr)
    if kind == "dataset":
        ns["has_getbatch"] = ".getbatch" in method_names or bool(parent and parent.has_getbatch)
    return type(str(name), bases, ns)


def new_instance(cls):
    """Create an instance without running R's initialize; returns [obj, key]."""
    obj = cls.__new__(cls)
    obj._r_base_init()
    key = next(_keys)
    obj.__dict__["_r_key"] = key
    return [obj, key]


def attach(obj, names, fns):
    """Attach R closures as guarded instance attributes (bypasses nn.Module.__setattr__)."""
    d = obj.__dict__
    label = type(obj).__name__
    for n, f in zip(names, fns):
        d[_DATASET_ATTRS.get(n, n)] = guard(f, f"{label}.{n}")
    return None


def weak(obj):
    return weakref.ref(obj)


def is_r_object(obj):
    return isinstance(obj, RObject)


def call_super(base, name, self, args, kwargs):
    """``super$<name>(...)`` for a Python base class of an R class."""
    args = list(args) if isinstance(args, (list, tuple)) else [args]
    kwargs = dict(kwargs) if isinstance(kwargs, dict) else {}
    if name == "__init__":
        if base in (nn.Module, object, Dataset, IterableDataset):
            return None
        args, kwargs = coerce_init(args, kwargs)
    return getattr(base, name)(self, *args, **kwargs)


# ---------------------------------------------------------------------------
# items and batches
# ---------------------------------------------------------------------------

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
    """R value -> tensors, R-torch style (doubles -> float32, integers -> int64)."""
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
        return {k: r_item(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if obj and all(_is_number(v) for v in obj):
            return from_r(list(obj))  # an R atomic vector
        return [r_item(v) for v in obj]
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
        return {n: t[index] for n, t in zip(self.names, self.tensors)}


def tensor_dataset(tensors, names=None):
    tensors = [t if isinstance(t, torch.Tensor) else from_r(t) for t in tensors]
    if names and any(names):
        names = [n if n else f"V{i + 1}" for i, n in enumerate(names)]
        return RNamedTensorDataset(*tensors, names=names)
    return TensorDataset(*tensors)


def dataloader(dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
               num_workers=0, collate_fn=None, pin_memory=False, drop_last=False,
               timeout=0, worker_init_fn=None, r_reseed=None, **kwargs):
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
    if num_workers > 0 and r_reseed is not None and isinstance(dataset, RObject):
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
        return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                          collate_fn=collate_fn, pin_memory=bool(pin_memory), timeout=timeout,
                          worker_init_fn=worker_init_fn, **kwargs)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler,
                      num_workers=num_workers, collate_fn=collate_fn, pin_memory=bool(pin_memory),
                      drop_last=bool(drop_last), timeout=timeout, worker_init_fn=worker_init_fn,
                      **kwargs)


_DONE = object()


def iter_next(it):
    """[True, value] or [False, None] when the iterator is exhausted."""
    v = next(it, _DONE)
    if v is _DONE:
        return [False, None]
    return [True, v]


def subset(dataset, indices):
    """``dataset_subset()`` with 1-based indices."""
    idx = [to_int(i) for i in (indices if isinstance(indices, (list, tuple)) else [indices])]
    if any(i == 0 for i in idx):
        raise ValueError("Indexing starts at 1 but found a 0.")
    n = len(dataset)
    return torch.utils.data.Subset(dataset, [i - 1 if i > 0 else n + i for i in idx])


def named(module, what):
    """``model$parameters`` & co: dict of ``named_<what>()``."""
    return dict(getattr(module, "named_" + what)())


def module_device(module):
    """Device of a module's first parameter (or buffer); cpu when it has none."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        return t.device
    return torch.device("cpu")


def n_parameters(module):
    return float(sum(p.numel() for p in module.parameters()))
