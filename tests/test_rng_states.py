"""get_rng_states / set_rng_states: the captured states equal the generators' own, and restore them."""

import random

import numpy as np
import torch

from pyluz import rng
from pyluz.rng import get_rng_states, set_rng_states


def numpy_matches(states):
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    got = states["numpy"]
    assert got["kind"] == kind and got["pos"] == pos and got["has_gauss"] == has_gauss
    assert np.array_equal(got["keys"].numpy(), keys.astype(np.int64))
    if has_gauss:
        assert got["cached_gaussian"] == cached


def test_numpy_state_is_read_again_whenever_it_may_have_changed():
    # The numpy state is re-read only when its words moved or a Gaussian is cached: every way of
    # changing the state must show in the next capture.
    np.random.seed(5)
    for change in [
        lambda: None,
        lambda: np.random.rand(3),
        lambda: np.random.randn(),  # draws two Gaussians, caches one
        lambda: np.random.randn(),  # consumes the cached one without moving the words
        lambda: None,
        lambda: np.random.seed(5),
        lambda: np.random.randint(10),
    ]:
        change()
        numpy_matches(get_rng_states())
    assert rng._NUMPY.view is not None  # the fast comparison was in use (MT19937 with ctypes)


def test_states_restore_every_generator():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    np.random.randn()  # leave a cached Gaussian
    saved = get_rng_states()
    draws = (random.random(), np.random.randn(), np.random.rand(), torch.rand(2))
    assert saved["python"]["state"].dtype == torch.int64 and saved["python"]["state"].shape == (625,)
    set_rng_states(saved)
    again = (random.random(), np.random.randn(), np.random.rand(), torch.rand(2))
    assert draws[:3] == again[:3] and torch.equal(draws[3], again[3])
