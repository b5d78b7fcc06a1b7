"""fit() builds the model (and its optimizers) before it makes, splits or batches the data: luz's order.

So the initial weights are those of `torch.manual_seed(s); Net()` whatever the data conversion
draws from torch's RNG.
"""

import pytest
import torch
from torch import nn

import pyluz
from pyluz.data import Deferred, resolve
from helpers import Net


class FirstWeights(pyluz.Callback):
    """Keeps a copy of the weights at on_fit_begin (before any step)."""

    def on_fit_begin(self):
        self.weights = {k: v.detach().clone() for k, v in self.ctx.model.state_dict().items()}


def hand_built(seed):
    torch.manual_seed(seed)
    return Net().state_dict()


def fit_first_weights(seed, data, **kwargs):
    spy = FirstWeights()
    torch.manual_seed(seed)
    pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1).fit(
        data, epochs=1, verbose=False, callbacks=[spy], **kwargs
    )
    return spy.weights


def assert_same_weights(got, expected):
    assert list(got) == list(expected)
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def test_a_valid_fraction_is_split_after_the_model_is_built():
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    # split_valid draws a permutation from torch's RNG: before the model it would change the weights
    assert_same_weights(fit_first_weights(3, (x, y), valid_data=0.25), hand_built(3))


def test_deferred_data_is_made_after_the_model_and_valid_data_before_data():
    made = []

    def make_train():
        made.append("data")
        return torch.randn(64, 4), torch.randint(0, 2, (64,))

    def make_valid():
        made.append("valid_data")
        return torch.randn(16, 4), torch.randint(0, 2, (16,))

    got = fit_first_weights(5, Deferred(make_train), valid_data=Deferred(make_valid))
    assert made == ["valid_data", "data"]  # luz evaluates `valid_data` first
    assert_same_weights(got, hand_built(5))


def test_deferred_data_draws_what_luz_would_draw():
    """With the model built first, the data drawn in the call are those drawn after the weights."""
    seen = {}

    class Keep(pyluz.Callback):
        def on_train_batch_begin(self):
            seen.setdefault("rows", set()).update(map(tuple, self.ctx.input.tolist()))

    torch.manual_seed(9)
    pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1).fit(
        Deferred(lambda: (torch.randn(32, 4), torch.randint(0, 2, (32,)))), epochs=1, verbose=False, callbacks=[Keep()]
    )
    torch.manual_seed(9)
    Net()
    expected = torch.randn(32, 4)
    assert seen["rows"] == set(map(tuple, expected.tolist()))


def test_deferred_needs_a_function_and_resolve_passes_other_data():
    with pytest.raises(TypeError, match="`make`.*function"):
        Deferred(42)
    x = torch.zeros(2)
    assert resolve(x) is x
    assert resolve(Deferred(lambda: x)) is x


def test_deferred_none_data_is_the_usual_error():
    with pytest.raises(ValueError, match="`data`"):
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).fit(
            Deferred(lambda: None), epochs=1, verbose=False
        )
