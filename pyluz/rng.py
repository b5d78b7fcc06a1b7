"""Random number generator states: Python's `random`, numpy's global RNG, torch (CPU and CUDA) and
the `torch.Generator`s of a fit's loaders, as plain data a checkpoint can hold.

`get_rng_states(ctx)` returns tensors, numbers and strings only (so a weights-only reader loads
them); `set_rng_states(states, ctx)` puts them back. `ctx` is any object with `train_data` /
`valid_data` loaders (a `pyluz.Context`), or None for the global generators only.
"""

import array
import ctypes
import random

import numpy as np
import torch

# Generators of the language driving the engine (R's `.Random.seed`): name -> (get, set).
_SOURCES = {}


def register_rng_source(name, get, set):
    """Save and restore another generator with the others: `get()` returns its state as a sequence of
    ints (or None when it has none yet), `set(state)` receives an int32 numpy array. The R package
    registers R's `.Random.seed` this way when R drives a fit. `get=None` removes the source.

    >>> seed = {"state": [1, 2, 3]}
    >>> register_rng_source("demo", lambda: seed["state"], lambda s: seed.update(state=s.tolist()))
    >>> saved = get_rng_states()
    >>> seed["state"] = [9]
    >>> set_rng_states(saved)
    >>> seed["state"]
    [1, 2, 3]
    >>> register_rng_source("demo", None, None)
    """
    if get is None:
        _SOURCES.pop(str(name), None)
        return
    _SOURCES[str(name)] = (get, set)


def _loader_generators(ctx):
    """{"train"/"valid": torch.Generator} used by the fit's loaders (when they have their own)."""
    found = {}
    if ctx is None:
        return found
    seen = set()
    for name in ("train", "valid"):
        loader = getattr(ctx, f"{name}_data", None)
        while loader is not None and hasattr(loader, "loader") and not hasattr(loader, "generator"):
            loader = loader.loader  # DeviceLoader
        for candidate in (
            getattr(loader, "generator", None),
            getattr(getattr(loader, "sampler", None), "generator", None),
            getattr(getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None),
        ):
            if isinstance(candidate, torch.Generator) and id(candidate) not in seen:
                seen.add(id(candidate))
                found[name] = candidate
                break
    return found


class _NumpyState:
    """numpy's global RNG state, re-read only when it may have changed.

    `np.random.get_state()` copies the 624 MT19937 words one by one (about 70 µs, most of a
    mid-epoch checkpoint's RNG capture), and most training loops never draw from numpy. The words
    and position are compared with the last capture through the generator's state struct (a
    memory view, a few µs); equal words with no cached Gaussian mean an unchanged state (every
    draw moves the words; a Gaussian cached by the last draw is consumed without moving them, so
    then it is always re-read). `set_rng_states` forgets the capture.
    """

    def __init__(self):
        self.generator = self.view = self.words = self.state = None

    def _live_words(self):
        generator = np.random.mtrand._rand._bit_generator
        if generator is not self.generator:
            self.generator, self.view, self.words, self.state = generator, None, None, None
            try:
                if type(generator).__name__ == "MT19937":
                    address = generator.ctypes.state_address  # struct {uint32 key[624]; int pos;}
                    self.view = np.ctypeslib.as_array((ctypes.c_uint32 * 625).from_address(address))
            except Exception:  # no ctypes here: always read the full state
                self.view = None
        return self.view

    def get(self):
        view = self._live_words()
        if view is not None and self.state is not None and not self.state["has_gauss"]:
            if np.array_equal(view, self.words):
                return dict(self.state)
        kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
        state = {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
        if view is not None:
            self.words, self.state = view.copy(), state
        return dict(state)

    def forget(self):
        self.state = None


_NUMPY = _NumpyState()
_WORDS = "L" if array.array("L").itemsize == 8 else "Q"


def get_rng_states(ctx=None):
    """The states of Python's `random`, numpy's global RNG, torch (CPU, CUDA when in use) and the loaders' generators."""
    version, internal, gauss = random.getstate()
    states = {
        "python": {
            "version": int(version),
            # 32-bit words as 8-byte unsigned ints, read as int64: array.array converts them in C
            # ("L" takes a fast path "q" doesn't: ~12 µs vs ~29 for np.array from the tuple)
            "state": torch.frombuffer(array.array(_WORDS, internal), dtype=torch.int64),
            "gauss_next": gauss,
        },
        "numpy": _NUMPY.get(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = list(torch.cuda.get_rng_state_all())
    generators = _loader_generators(ctx)
    if generators:
        states["generators"] = {k: g.get_state() for k, g in generators.items()}
    sources = {}
    for name, (get, _) in _SOURCES.items():
        state = get()
        if state is not None:
            sources[name] = torch.from_numpy(np.asarray(state, dtype=np.int64).reshape(-1).copy())
    if sources:
        states["sources"] = sources
    return states


def set_rng_states(states, ctx=None):
    """Restore what `get_rng_states` returned (missing parts are left alone)."""
    py = states.get("python")
    if py is not None:
        random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    npy = states.get("numpy")
    if npy is not None:
        _NUMPY.forget()
        np.random.set_state(
            (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
        )
    if states.get("torch") is not None:
        torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        for i in range(n):
            torch.cuda.set_rng_state(cuda[i], i)
    saved = states.get("generators") or {}
    for name, generator in _loader_generators(ctx).items():
        if name in saved:
            generator.set_state(saved[name])
    for name, state in (states.get("sources") or {}).items():
        if name in _SOURCES:
            _SOURCES[name][1](state.numpy().astype(np.int32))


__all__ = ["get_rng_states", "set_rng_states", "register_rng_source"]
