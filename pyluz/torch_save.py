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

When every tensor in the object is a plain CPU one (a checkpoint's usual case), `to_bytes`
goes further: it pickles each tensor straight to the storage reference torch would write, with
no TypedStorage built, and writes the records into torch's own zip writer itself (about half the
time of `torch.save` for a small fit's checkpoint). Anything else (a CUDA tensor, a storage, a
Parameter, `torch.serialization.skip_data`) sends the whole object down the `torch.save` path.

The files are record for record the ones `torch.save` writes (tests compare them), so
`torch.load` reads them as always, weights-only included.

>>> data = to_bytes({"w": torch.ones(2)})
>>> torch.load(io.BytesIO(data), weights_only=True)["w"]
tensor([1., 1.])
"""

import collections
import io
import pickle
import sys

import torch
from torch import serialization

_STORAGES = (torch.storage.TypedStorage, torch.UntypedStorage)
# dtypes torch pickles through a TypedStorage and `_rebuild_tensor_v2` (newer ones use v3).
_V2_DTYPES = frozenset(torch.storage._dtype_to_storage_type_map()) - frozenset(torch.storage._new_dtypes())
_rebuild_tensor_v2 = torch._utils._rebuild_tensor_v2
_set_persistent_id = pickle.Pickler.persistent_id.__set__
# The storage class torch names in a storage reference (torch.FloatStorage, ...), by dtype.
_STORAGE_CLASS = {d: getattr(torch, name) for d, name in torch.storage._dtype_to_storage_type_map().items()}


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


class _NotPlain(Exception):
    """The object holds something `_CpuPickler` leaves to torch's path."""


class _StorageRef:
    """Stands where a tensor's storage goes in the pickle; `persistent_id` writes its reference."""

    __slots__ = ("pid",)

    def __init__(self, pid):
        self.pid = pid


class _CpuPickler(pickle.Pickler):
    """Pickles plain CPU tensors as torch does, collecting their storages; raises `_NotPlain` otherwise."""

    def __init__(self, file):
        super().__init__(file, protocol=serialization.DEFAULT_PROTOCOL)
        self.storages = {}  # key ("0", "1", ...) -> untyped storage, in first-seen order as torch writes them
        self._keys = {}  # storage id -> key
        self._dtypes = {}  # data pointer -> dtype (torch refuses two dtypes over one storage)
        _set_persistent_id(self, lambda obj: obj.pid if type(obj) is _StorageRef else None)

    def reducer_override(self, obj):
        if type(obj) is torch.Tensor:
            if not (obj.is_cpu and _plain_tensor(obj)):
                raise _NotPlain
            storage, dtype = obj.untyped_storage(), obj.dtype
            if self._dtypes.setdefault(storage.data_ptr(), dtype) != dtype:
                raise _NotPlain  # torch's path raises its own error for it
            key = self._keys.get(storage._cdata)
            if key is None:
                key = self._keys[storage._cdata] = str(len(self._keys))
                self.storages[key] = storage
            pid = ("storage", _STORAGE_CLASS[dtype], key, "cpu", storage.nbytes() // obj.element_size())
            args = (
                _StorageRef(pid),
                obj.storage_offset(),
                tuple(obj.size()),
                obj.stride(),
                False,
                collections.OrderedDict(),
            )
            return (_rebuild_tensor_v2, args)
        if type(obj) is collections.OrderedDict and not obj:
            return (collections.OrderedDict, ())  # the bytes `OrderedDict.__reduce_ex__` gives, without its slot lookup
        if isinstance(obj, (torch.Tensor, *_STORAGES)):
            raise _NotPlain
        return NotImplemented


def _cpu_bytes(obj):
    # torch.save's zip layout, record by record: data.pkl, the format records, then data/<key>.
    pickled = io.BytesIO()
    pickler = _CpuPickler(pickled)
    pickler.dump(obj)
    data = pickled.getvalue()
    buffer = io.BytesIO()
    alignment = serialization._get_storage_alignment()
    writer = torch._C.PyTorchFileWriter(buffer, serialization.get_crc32_options(), alignment)
    writer.write_record("data.pkl", data, len(data))
    writer.write_record(".format_version", "1", 1)
    writer.write_record(".storage_alignment", str(alignment), len(str(alignment)))
    writer.write_record("byteorder", sys.byteorder, len(sys.byteorder))
    for key, storage in pickler.storages.items():
        writer.write_record(f"data/{key}", storage, storage.nbytes())
    writer.write_end_of_file()
    return buffer.getvalue()


def to_bytes(obj):
    """The bytes of the file `save(obj, ...)` writes (see the module docstring)."""
    if not serialization._serialization_tls.skip_data:
        try:
            return _cpu_bytes(obj)
        except _NotPlain:
            pass
    buffer = io.BytesIO()
    save(obj, buffer)
    return buffer.getvalue()
