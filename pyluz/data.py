"""Turn what users pass as `data` into batches: one adapter per input kind.

In-memory inputs (tensors, arrays, tuples/dicts of them, TensorDataset) take the fast path,
`TensorBatches`: a batch is one index operation on the stored tensors.
"""

import math
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset

from . import nested
from .checks import check_bool, check_int, check_type, fail, message
from .nested import PositionalDict

DEFAULT_BATCH_SIZE = 32
# Options the fast path honours itself; any other option means a real DataLoader.
FAST_PATH_OPTIONS = {
    "batch_size",
    "shuffle",
    "drop_last",
    "generator",
    "num_workers",
    "pin_memory",
    "persistent_workers",
}


def draw_seed(generator=None):
    """A 64-bit seed drawn from torch's RNG (or `generator`) the way DataLoader and RandomSampler draw theirs."""
    return int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())


class TensorBatches:
    """Batches of in-memory tensors, sliced with one index operation per tensor.

    `tensors` is a tuple/list or dict of tensors sharing the first dimension, or such containers
    nested (``[(num, cat), y]``, ``{"x": {"num": ..., "cat": ...}, "y": ...}``): a batch has the
    same structure, walked with `pyluz.nested`.

    With the same torch seed it yields the same batches in the same order as
    ``DataLoader(TensorDataset(...), batch_size, shuffle, drop_last)`` and consumes the torch RNG
    the same way, so results match a hand-written DataLoader loop.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> batches = TensorBatches((x, y), batch_size=16, shuffle=True)
    >>> len(batches), [xb.shape[0] for xb, yb in batches]
    (4, [16, 16, 16, 16])
    >>> nested_batch = next(iter(TensorBatches([(x, x[:, :2]), y], batch_size=16)))
    >>> [t.shape[0] for t in nested.tensors(nested_batch)]
    [16, 16, 16]
    """

    def __init__(self, tensors, batch_size=DEFAULT_BATCH_SIZE, shuffle=False, drop_last=False, generator=None):
        self.batch_size = check_batch_size(batch_size, "batch_size")
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.generator = generator
        self._set_tensors(tensors)

    def _set_tensors(self, tensors):
        self.tensors = tensors
        self.n = _first_tensor(tensors).shape[0]
        # The common case, a flat list/dict of tensors, is sliced without walking the structure.
        parts = nested.children(tensors)
        self._flat = parts is not None and all(isinstance(t, torch.Tensor) for t in parts)
        self._parts = parts if self._flat else None

    def __len__(self):
        if self.drop_last:
            return self.n // self.batch_size
        return math.ceil(self.n / self.batch_size)

    def to(self, device):
        """Move the stored tensors to `device` once, so batches need no transfer."""
        self._set_tensors(nested.map_tensors(lambda t: t.to(device), self.tensors))
        return self

    def take(self, rows):
        """The batch of `rows` (a slice or a tensor of row indices), in the stored structure.

        A flat tuple/list gives a list (as a DataLoader's batches are); nested containers keep their type.
        """
        if self._flat:
            if isinstance(rows, slice):
                parts = [t[rows] for t in self._parts]
            else:
                parts = [t.index_select(0, rows) for t in self._parts]
            return nested.rebuild(self.tensors, parts) if isinstance(self.tensors, dict) else parts
        if isinstance(rows, slice):
            return nested.map_tensors(lambda t: t[rows], self.tensors)
        return nested.map_tensors(lambda t: t.index_select(0, rows), self.tensors)

    def _order(self):
        # Same RNG draws as DataLoader: its iterator draws a base seed, then RandomSampler draws
        # the seed of its own generator (or uses the given one).
        draw_seed(self.generator)
        if not self.shuffle:
            return None
        generator = self.generator
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(draw_seed())
        return torch.randperm(self.n, generator=generator)

    def __iter__(self):
        return self.batches_from(0)

    def batches_from(self, start):
        """The batches from the `start`-th on (0-based), with the RNG draws of a full pass (to resume mid-epoch)."""
        order = self._order()
        n, bs = self.n, self.batch_size
        stop = n - n % bs if self.drop_last else n
        if order is not None:
            order = order.to(_first_tensor(self.tensors).device)
        for row in range(start * bs, stop, bs):
            yield self.take(slice(row, row + bs) if order is None else order[row : row + bs])
        if order is not None and self.generator is not None:
            # A finished RandomSampler draws one more permutation from its generator (for the
            # `num_samples % n` tail); do the same so a shared generator stays in step.
            torch.randperm(self.n, generator=self.generator)

    def subset(self, indices):
        """A TensorBatches over the rows `indices` (used for the valid split)."""
        tensors = nested.map_tensors(lambda t: t[indices], self.tensors)
        return TensorBatches(tensors, self.batch_size, self.shuffle, self.drop_last, self.generator)


def _first_tensor(tensors):
    return nested.tensors(tensors)[0]


# -- converting user inputs -----------------------------------------------------------------


def to_tensor(x, argument):
    """Tensor from a tensor, numpy array, pandas object or list; floats become float32, ints int64."""
    if isinstance(x, torch.Tensor):
        return x
    if hasattr(x, "to_numpy") and not isinstance(x, np.ndarray):  # pandas Series/DataFrame
        x = x.to_numpy()
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "USO" and any(isinstance(v, (str, bytes)) for v in x.reshape(-1)[:1000]):
            raise TypeError(
                f"`{argument}` holds strings; expected numbers. Encode labels as integer class indices "
                "first (e.g. `codes, classes = pandas.factorize(y)`)."
            )
        if x.dtype == object:
            raise TypeError(f"`{argument}` holds Python objects (dtype=object); expected numbers.")
        if np.issubdtype(x.dtype, np.floating):
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if np.issubdtype(x.dtype, np.integer):
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(message(argument, "tensors or arrays", type(x).__name__))


def _is_array_like(x):
    return isinstance(x, (torch.Tensor, np.ndarray)) or hasattr(x, "to_numpy")


def _holds_arrays(x):
    """Whether `x` is array-like or a container (tuple/list/dict, nested) holding one."""
    if _is_array_like(x):
        return True
    parts = nested.children(x)
    return parts is not None and any(_holds_arrays(p) for p in parts)


def _keys(value):
    return list(value.keys()) if isinstance(value, dict) else range(len(value))


def _as_tensors(x, argument):
    """`x` with every array-like converted to a tensor, its containers kept (walked with `pyluz.nested`).

    A container holding no array (e.g. a list of numbers) is one array.
    """
    if _is_array_like(x) or not _holds_arrays(x):
        return to_tensor(x, argument)
    parts = nested.children(x)
    fmt = "{}[{!r}]" if isinstance(x, dict) else "{}[{}]"
    converted = [_as_tensors(p, fmt.format(argument, k)) for k, p in zip(_keys(x), parts, strict=True)]
    return nested.rebuild(x, converted)


def _first_dims(tensors, argument):
    """{path: first dim} of every tensor in a nested structure (None for a 0-d tensor)."""
    sizes = {}

    def walk(value, path):
        parts = nested.children(value)
        if parts is None:
            sizes[path] = value.shape[0] if value.dim() > 0 else None
            return
        fmt = "{}[{!r}]" if isinstance(value, dict) else "{}[{}]"
        for k, p in zip(_keys(value), parts, strict=True):
            walk(p, fmt.format(path, k))

    walk(tensors, argument)
    return sizes


def in_memory_tensors(data, argument):
    """The tensors of an in-memory input, or None when `data` is something else.

    In-memory inputs: one array (tensor, numpy array, pandas object), a tuple/list or dict of
    them, such containers nested (``((num, cat), y)``, ``{"x": {"num": ..., "cat": ...}, "y":
    y}``), or a TensorDataset. A tuple/list needs one array among its own items (else it is a
    list of samples, i.e. a dataset); a dict may hold only containers. The result keeps the structure (a top-level tuple becomes a list,
    as a DataLoader's batches are); every tensor must share the first dimension.
    """
    if isinstance(data, TensorDataset):
        tensors = list(data.tensors)
        names = getattr(data, "names", None)  # a TensorDataset whose items are dicts (e.g. named in R)
        if names:  # batches split by position, as an R named list does (nested.PositionalDict)
            tensors = PositionalDict(zip(names, tensors, strict=True))
    elif _is_array_like(data):
        tensors = [to_tensor(data, argument)]
    elif isinstance(data, (tuple, list)) and any(_is_array_like(x) for x in data):
        # An (x, y, ...) layout (one part an array; the others arrays or containers of them): a
        # list of numbers is converted; a None or an object is an error, not a 2-sample dataset.
        # With no array at the top it is a list of samples (a map-style dataset).
        _check_target_not_in_frame(data, argument)
        tensors = [_as_tensors(x, f"{argument}[{i}]") for i, x in enumerate(data)]
    elif isinstance(data, dict) and any(_holds_arrays(x) for x in data.values()):
        tensors = {k: _as_tensors(x, f"{argument}[{k!r}]") for k, x in data.items()}
    else:
        return None
    sizes = _first_dims(tensors, argument)
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(f"`{argument}`: every tensor/array must share the first dimension, got sizes {sizes}.")
    return tensors


def _check_target_not_in_frame(data, argument):
    """(frame, y): a pandas frame that still holds the column y came from would train on the answer."""
    if len(data) < 2 or not hasattr(data[0], "columns"):
        return
    columns = list(getattr(data[0], "columns", []))
    for i, y in enumerate(data[1:], start=1):
        names = [getattr(y, "name", None)] if not hasattr(y, "columns") else list(y.columns)
        held = [n for n in names if n is not None and n in columns]
        if held:
            raise ValueError(
                f"`{argument}[0]` (a DataFrame) still holds the target column(s) {held} that "
                f"`{argument}[{i}]` comes from, so the model would see the answer; drop it: "
                f"`df.drop(columns={held!r})`."
            )


def check_batch_size(batch_size, argument):
    """A positive int (not a bool, which Python counts as an int; integral floats from R are fine)."""
    return check_int(batch_size, argument, min_value=1)


def _check_options(options, argument="dataloader_options"):
    if options is None:
        return {}
    check_type(options, argument, dict, "a dict of DataLoader arguments")
    bad_keys = [k for k in options if not isinstance(k, str)]
    if bad_keys:
        raise TypeError(
            message(argument, "a dict keyed by DataLoader argument names (strings)", f"the keys {bad_keys!r}")
        )
    options = dict(options)
    if "batch_size" in options:
        check_batch_size(options["batch_size"], f"{argument}['batch_size']")
    for flag in ("shuffle", "drop_last", "pin_memory", "persistent_workers"):
        if flag in options:
            options[flag] = check_bool(options[flag], f"{argument}['{flag}']")
    if "num_workers" in options:
        options["num_workers"] = check_int(options["num_workers"], f"{argument}['num_workers']", min_value=0)
    return options


def phase_options(options, phase):
    """Defaults of luz: batch 32; train shuffles and drops the last batch; valid/predict never shuffle."""
    opts = {"batch_size": DEFAULT_BATCH_SIZE}
    if phase == "train":
        opts.update(shuffle=True, drop_last=True)
    opts.update(options)
    if phase in ("valid", "predict"):
        if opts.get("shuffle") and phase == "predict":
            warnings.warn("`shuffle=True` is ignored for predictions.", stacklevel=4)
        opts["shuffle"] = False
    return opts


def as_batches(data, options=None, phase="train", argument="data", pin_memory=False):
    """An iterable of batches (with `len` when known) for `data`; None stays None.

    `phase` is "train", "valid" or "predict"; `options` are DataLoader arguments (dataloader_options).
    """
    if data is None:
        return None
    user_options = _check_options(options)
    if isinstance(data, (DataLoader, TensorBatches)):
        if user_options:
            if phase == "train":
                raise ValueError(
                    f"`dataloader_options` can't be used when `{argument}` is already a dataloader; "
                    "set them on the DataLoader instead."
                )
            warnings.warn(
                f"`dataloader_options` are ignored because `{argument}` is already a dataloader.", stacklevel=3
            )
        return data
    opts = phase_options(user_options, phase)
    tensors = in_memory_tensors(data, argument)
    if tensors is not None and phase == "predict" and not isinstance(data, Dataset):
        tensors = [predict_inputs(tensors)]
    if tensors is not None and set(opts) <= FAST_PATH_OPTIONS:
        return TensorBatches(
            tensors, opts["batch_size"], opts.get("shuffle", False), opts.get("drop_last", False), opts.get("generator")
        )
    if tensors is not None:
        data = NestedDataset(tensors)
    if isinstance(data, IterableDataset):
        opts.pop("shuffle", None)
        opts.setdefault("pin_memory", pin_memory)
        return DataLoader(data, **opts)
    if isinstance(data, (tuple, list, dict)) and not data:
        raise ValueError(f"`{argument}` is an empty {type(data).__name__}.")
    # Other sequences (e.g. a list of (x, y) samples) are map-style datasets; strings and dicts are not.
    if isinstance(data, Dataset) or (
        hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, (str, bytes, dict))
    ):
        opts.setdefault("pin_memory", pin_memory)
        return DataLoader(data, **opts)
    raise TypeError(
        f"Unsupported `{argument}` of type {type(data).__name__}: expected a DataLoader, Dataset, IterableDataset, "
        "tensor/array, a tuple/list/dict of tensors or arrays, or a pandas DataFrame."
    )


def predict_inputs(tensors):
    """What in-memory `newdata` gives the model: all of it, as inputs (`predict` takes no target).

    One array is the input; a tuple/list or dict (nested or not) is the model's input as a whole
    (a multi-input model gets ``(a, b)``, never ``a`` with ``b`` taken for a target); a tuple or
    list of one array is that array. Datasets and loaders are not in-memory: their batches split
    as in `fit` (see `context.split_batch`).
    """
    if isinstance(tensors, list) and len(tensors) == 1:
        return tensors[0]
    return tensors


class NestedDataset(Dataset):
    """Map-style dataset over a (nested) structure of tensors; item `i` has the same structure."""

    def __init__(self, tensors):
        self.tensors = tensors
        self.n = _first_tensor(tensors).shape[0]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return nested.map_tensors(lambda t: t[i], self.tensors)


class Deferred:
    """Data that `fit` produces only when it needs it: after the model and its optimizers are built.

    luz builds the model before it evaluates its data arguments (R evaluates arguments lazily), so
    random numbers drawn while the data is made -- an R dataset drawing in `initialize()`, tensors
    drawn inside the call -- come after the model's initial weights. A front end whose arguments
    are evaluated eagerly passes `Deferred(make)` to keep that order; `make()` returns the data
    (anything `fit` takes, a fraction for `valid_data` included). `valid_data` is made before
    `data`, as luz evaluates them.

    >>> made = []
    >>> later = Deferred(lambda: made.append(1) or (torch.randn(8, 2), torch.randn(8, 1)))
    >>> before = len(made)
    >>> before, len(resolve(later)), len(made)
    (0, 2, 1)
    """

    def __init__(self, make):
        if not callable(make):
            fail("make", "a function of no arguments returning the data", make, "Deferred", TypeError)
        self.make = make

    def __repr__(self):
        return f"Deferred({self.make!r})"


def resolve(data):
    """The data itself: `data.make()` for a `Deferred`, else `data` unchanged."""
    return data.make() if isinstance(data, Deferred) else data


class HeldOut:
    """`valid_data`: a `fraction` of `data` held out, its rows picked by `sample(n, k)`.

    `sample` returns `k` distinct 0-based row indices below `n`, in the order drawn; a front end
    passes one drawing from its own random numbers, as luz picks the rows with R's `sample.int()`.
    A plain fraction picks them with torch's RNG.
    """

    def __init__(self, fraction, sample):
        if not callable(sample):
            fail("sample", "a function (n, k) returning k row indices", sample, "HeldOut", TypeError)
        self.fraction, self.sample = fraction, sample

    def __repr__(self):
        return f"HeldOut({self.fraction!r}, {self.sample!r})"


def _sampled_rows(sample, n, k, argument):
    rows = torch.as_tensor(np.atleast_1d(np.asarray(sample(n, k))).astype(np.int64))
    if (
        rows.dim() != 1
        or len(rows) != k
        or len(rows.unique()) != k
        or (k and not 0 <= int(rows.min()) <= int(rows.max()) < n)
    ):
        raise ValueError(
            f"The sampler of `{argument}` must return {k} distinct row indices in [0, {n}), got {rows.tolist()!r}."
        )
    return rows


def split_valid(data, fraction, argument="valid_data", sample=None):
    """Split `data` at random into (train, valid) with `fraction` of the rows for validation.

    luz's rule: the validation rows are a random sample, in the order drawn; the training rows
    keep their order. The rows come from `sample(n, k)` (see `HeldOut`), else from torch's RNG.
    """
    if isinstance(fraction, bool) or not 0 <= fraction < 1:
        fail(argument, "a fraction in [0, 1) (or the validation data)", fraction)
    if fraction == 0:
        return data, None
    if isinstance(data, (DataLoader, TensorBatches)):
        raise ValueError(
            f"`{argument}` can't be a fraction when `data` is a dataloader (DataLoader); pass a Dataset or tensors."
        )
    tensors = in_memory_tensors(data, "data")
    if tensors is None and (isinstance(data, IterableDataset) or not hasattr(data, "__len__")):
        raise ValueError(
            f"`{argument}` can't be a fraction when `data` has no known length (e.g. an "
            "IterableDataset); pass the validation data itself."
        )
    n = _first_tensor(tensors).shape[0] if tensors is not None else len(data)
    n_valid = int(n * fraction)
    if n_valid == 0:
        raise ValueError(
            f"`{argument}={fraction!r}` of the {n} rows of `data` selects no validation row; use a "
            "larger fraction or pass the validation data itself."
        )
    if sample is None:
        perm = torch.randperm(n)
        valid_idx, train_idx = perm[:n_valid], perm[n_valid:].sort().values
    else:
        valid_idx = _sampled_rows(sample, n, n_valid, argument)
        keep = torch.ones(n, dtype=torch.bool)
        keep[valid_idx] = False
        train_idx = keep.nonzero().flatten()
    if tensors is not None:
        return nested.map_tensors(lambda t: t[train_idx], tensors), nested.map_tensors(lambda t: t[valid_idx], tensors)
    return Subset(data, train_idx.tolist()), Subset(data, valid_idx.tolist())


def num_batches(loader):
    """len(loader), or None when unknown (iterable datasets)."""
    try:
        return len(loader)
    except TypeError:
        return None
