"""`torch.save` with a leaner pickler: the same file, written with less Python per object.

`torch.save` calls a two-layer Python `persistent_id` for every object it pickles (every int, str
and dict of a state, ~400 for a small fit's checkpoint) and reduces each tensor through
`Tensor.__reduce_ex__`, which checks a dozen special cases first. AutoResume writes a checkpoint
every N steps, so that per-object cost is most of a mid-epoch checkpoint's price. Through
`torch.save`'s own `pickle_module` argument this module gives it a pickler that

- asks torch's `persistent_id` only about storages (a C `isinstance` filters the rest), and
- reduces a plain dense tensor (exact `torch.Tensor`, CPU or CUDA, a classic dtype, no hooks,
  no Python attributes, no conj/neg bit, not quantized) to the very call `__reduce_ex__` would
  give (`torch._utils._rebuild_tensor_v2` over a TypedStorage); anything else takes torch's path.

The files are record for record the ones `torch.save` writes (tests compare them), so
`torch.load` reads them as always, weights-only included.

>>> data = to_bytes({"w": torch.ones(2)})
>>> torch.load(io.BytesIO(data), weights_only=True)["w"]
tensor([1., 1.])
"""

import collections
import io
import pickle

import torch

_STORAGES = (torch.storage.TypedStorage, torch.UntypedStorage)
# dtypes torch pickles through a TypedStorage and `_rebuild_tensor_v2` (newer ones use v3).
_V2_DTYPES = frozenset(torch.storage._dtype_to_storage_type_map()) - frozenset(torch.storage._new_dtypes())
_rebuild_tensor_v2 = torch._utils._rebuild_tensor_v2
_set_persistent_id = pickle.Pickler.persistent_id.__set__


def _plain_tensor(t):
    return (
        type(t) is torch.Tensor
        and t.layout is torch.strided
        and t.dtype in _V2_DTYPES
        and t.device.type in ("cpu", "cuda")
        and not t.requires_grad
        and t._backward_hooks is None
        and not t.__dict__
        and not t.is_quantized
        and not t.is_conj()
        and not t.is_neg()
    )


class _LeanPickler(pickle.Pickler):
    """Subclassed by `torch.save` (which adds its `persistent_id` method); see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        ask_torch = self.persistent_id  # torch's bound method: storages -> ('storage', ...), else None
        # Set through the C pickler's own slot: a Python attribute would shadow nothing it reads.
        _set_persistent_id(self, lambda obj: ask_torch(obj) if isinstance(obj, _STORAGES) else None)

    def reducer_override(self, obj):
        # Called only for objects the C pickler has no fast path for (tensors, storages, classes, ...).
        if isinstance(obj, torch.Tensor) and _plain_tensor(obj):
            storage = torch.storage.TypedStorage(wrap_storage=obj.untyped_storage(), dtype=obj.dtype, _internal=True)
            args = (storage, obj.storage_offset(), tuple(obj.size()), obj.stride(), False, collections.OrderedDict())
            return (_rebuild_tensor_v2, args)
        return NotImplemented


class _PickleModule:
    """What `torch.save(pickle_module=)` needs: a module-like object with `Pickler`."""

    Pickler = _LeanPickler
    Unpickler = pickle.Unpickler
    __name__ = "pyluz.torch_save"


PICKLE_MODULE = _PickleModule()


def save(obj, f):
    """`torch.save(obj, f)`, leaner: the same file (see the module docstring).

    >>> buffer = io.BytesIO()
    >>> save([torch.zeros(1)], buffer)
    >>> torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    [tensor([0.])]
    """
    torch.save(obj, f, pickle_module=PICKLE_MODULE)


def to_bytes(obj):
    """The bytes of the file `save(obj, ...)` writes (see the module docstring)."""
    buffer = io.BytesIO()
    save(obj, buffer)
    return buffer.getvalue()
