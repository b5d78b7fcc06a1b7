"""Python classes whose methods are R closures (R's ``nn_module()`` / ``dataset()``).

Serves ``rpkg/R/torch-class.R`` (the object system behind ``nn_module()``, ``dataset()``).

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
from torch.utils.data import Dataset, IterableDataset

from .guard import guard
from .torch_data import RBatch, r_item
from .torch_indices import to_1_based
from .torch_nn_args import coerce_init
from .torch_optim import optim_params

__all__ = [
    "RObject",
    "RModule",
    "RDataset",
    "RIterableDataset",
    "ROptimizer",
    "RLRScheduler",
    "make_class",
    "new_instance",
    "attach",
    "weak",
    "take_dead",
    "is_r_object",
    "call_super",
]

_keys = itertools.count(1)
_class_ids = itertools.count(1)

# R method names (datasets) -> Python instance attribute names
_DATASET_ATTRS = {".getitem": "_r_getitem", ".length": "_r_length", ".getbatch": "_r_getbatch", ".iter": "_r_iter"}


class RObject:
    """Mixin for Python objects backed by an R-side state (R package pyluz)."""

    __pyluz_r__ = True
    _r_init = None  # guarded R fn (self, key, args, kwargs)
    _r_clone = None  # guarded R fn (new, old, new_key)
    _r_method_names = frozenset()
    _r_py_base = None  # Python class given as `inherit =`

    def _r_base_init(self):
        raise NotImplementedError

    def __reduce_ex__(self, protocol):
        raise TypeError(
            f"{type(self).__name__} is defined in R (pyluz) and can't be pickled: R closures don't "
            "survive pickling. Use num_workers=0 or the default 'fork' start method for "
            "DataLoader workers, and save weights with state_dict() instead of the whole object."
        )

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
        return r_item(fn(to_1_based(int(i))))

    def __len__(self):
        fn = self.__dict__.get("_r_length")
        if fn is None:
            raise TypeError(f"{type(self).__name__} defines no .length method")
        n = fn()
        return int(n)

    def __getitems__(self, indices):
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        idx = [to_1_based(int(i)) for i in indices]
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


class ROptimizer(_RData, torch.optim.Optimizer):
    """``torch.optim.Optimizer`` whose ``step`` is an R closure (R torch's ``optimizer()``);
    R's ``initialize`` calls ``super$initialize(params, defaults)``."""


class RLRScheduler(_RData, torch.optim.lr_scheduler.LRScheduler):
    """LR scheduler whose ``get_lr`` is an R closure (R torch's ``lr_scheduler()``)."""


_BASES = {
    "module": RModule,
    "dataset": RDataset,
    "iterable_dataset": RIterableDataset,
    "optimizer": ROptimizer,
    "lr_scheduler": RLRScheduler,
}


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
        # one module per generator: R reads the class vector from the qualified names
        # (pyluz.interop.torch_class.g3.Net), so two generators named alike never share one
        "__module__": f"{__name__}.g{next(_class_ids)}",
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
    for n, f in zip(names, fns, strict=True):
        d[_DATASET_ATTRS.get(n, n)] = guard(f, f"{label}.{n}")
    return None


# Keys of R-backed objects Python has freed, for R to forget their R state (torch-class.R keeps
# the state of every live instance; a weakref callback can't call R, so R takes them later).
_dead_keys = []


def weak(obj, key=None):
    """A weak reference to ``obj``; with ``key``, ``key`` is queued for :func:`take_dead` once
    ``obj`` is freed."""
    if key is None:
        return weakref.ref(obj)
    return weakref.ref(obj, lambda _ref, k=key: _dead_keys.append(k))


def take_dead():
    """The keys queued since the last call (and forget them)."""
    out = _dead_keys[:]
    del _dead_keys[: len(out)]  # keys appended meanwhile (another thread) stay queued
    return out


def is_r_object(obj):
    return isinstance(obj, RObject)


def call_super(base, name, self, args, kwargs):
    """``super$<name>(...)`` for a Python base class of an R class."""
    args = list(args) if isinstance(args, (list, tuple)) else [args]
    kwargs = dict(kwargs) if isinstance(kwargs, dict) else {}
    if name == "__init__":
        if base in (nn.Module, object, Dataset, IterableDataset):
            return None
        if isinstance(base, type) and issubclass(base, torch.optim.Optimizer) and args:
            args = [optim_params(args[0]), *args[1:]]  # R's model$parameters (a named list)
            return base.__init__(self, *args, **kwargs)
        if isinstance(base, type) and issubclass(base, torch.optim.lr_scheduler.LRScheduler):
            # R torch's initialize(optimizer, last_epoch = -1, verbose = FALSE): torch has no verbose
            kwargs.pop("verbose", None)
            last_epoch = kwargs.pop("last_epoch", args[1] if len(args) > 1 else -1)
            return base.__init__(self, args[0], int(last_epoch))
        args, kwargs = coerce_init(args, kwargs)
    return getattr(base, name)(self, *args, **kwargs)
