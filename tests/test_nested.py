"""The one walker of nested values (pyluz.nested) and the places that use it agree on every container."""

import collections

import pytest
import torch

import pyluz
from pyluz import nested
from pyluz.accelerator import move_to_device
from pyluz.runner import stack_predictions

Pair = collections.namedtuple("Pair", "x y")

STRUCTURES = {
    "tensor": lambda t: t,
    "list": lambda t: [t, t + 1],
    "tuple": lambda t: (t, t + 1),
    "namedtuple": lambda t: Pair(t, t + 1),
    "dict": lambda t: {"a": t, "b": t + 1},
    "nested": lambda t: {"pair": Pair(t, [t + 1, (t + 2, "tag")]), "n": 3, "none": None},
}


@pytest.mark.parametrize("kind", sorted(STRUCTURES))
def test_map_tensors_keeps_the_structure_and_the_other_leaves(kind):
    value = STRUCTURES[kind](torch.ones(2))
    doubled = nested.map_tensors(lambda t: t * 2, value)
    assert type(doubled) is type(value)
    assert [t.tolist() for t in nested.tensors(doubled)] == [(t * 2).tolist() for t in nested.tensors(value)]
    if kind == "nested":
        assert doubled["n"] == 3 and doubled["none"] is None and doubled["pair"].y[1][1] == "tag"
        assert isinstance(doubled["pair"], Pair)


@pytest.mark.parametrize("kind", sorted(STRUCTURES))
def test_tensors_lists_every_tensor_in_order(kind):
    value = STRUCTURES[kind](torch.zeros(1))
    expected = {"tensor": 1, "list": 2, "tuple": 2, "namedtuple": 2, "dict": 2, "nested": 3}[kind]
    assert len(nested.tensors(value)) == expected
    assert [t.item() for t in nested.tensors(value)] == list(range(expected))


@pytest.mark.parametrize("kind", sorted(STRUCTURES))
def test_device_moves_and_detach_walk_every_container(kind):
    value = STRUCTURES[kind](torch.ones(2, requires_grad=True))
    moved = move_to_device(value, torch.device("meta"))
    assert type(moved) is type(value)
    assert all(t.device.type == "meta" for t in nested.tensors(moved))
    assert not any(t.requires_grad for t in nested.tensors(nested.detach(value)))


@pytest.mark.parametrize("kind", ["tensor", "list", "tuple", "namedtuple", "dict"])
def test_stacking_predictions_concatenates_each_leaf(kind):
    batches = [STRUCTURES[kind](torch.full((n, 2), float(n))) for n in (1, 3)]
    stacked = stack_predictions(batches)
    assert type(stacked) is type(batches[0])
    found = nested.tensors(stacked)
    assert len(found) == (1 if kind == "tensor" else 2)
    for t, offset in zip(found, range(len(found)), strict=True):
        assert t.shape == (4, 2)
        assert t[:, 0].tolist() == [1.0 + offset] + [3.0 + offset] * 3


def test_stacking_scalars_and_mixed_outputs():
    assert stack_predictions([torch.tensor(1.0), torch.tensor(2.0)]).tolist() == [1.0, 2.0]
    mixed = [(torch.ones(1), "a"), (torch.ones(1), "b")]
    assert stack_predictions(mixed) is mixed  # not only tensors: the per-batch list
    uneven = [{"a": torch.ones(1)}, {"b": torch.ones(1)}]
    assert stack_predictions(uneven) is uneven
    assert stack_predictions([]) == []


def test_predict_stacks_namedtuple_outputs():
    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            out = self.lin(x)
            return Pair(out[:, :1], out[:, 1:])

    model = TwoHeads()
    fitted = pyluz.Fitted(
        model=model,
        records={},
        luz_module=pyluz.setup(model, loss=torch.nn.MSELoss(), optimizer=torch.optim.SGD),
        opt_names=["opt"],
    )
    x = torch.randn(10, 3)
    preds = fitted.predict(x, verbose=False, dataloader_options={"batch_size": 4})
    assert isinstance(preds, Pair) and preds.x.shape == (10, 1)
    with torch.no_grad():
        torch.testing.assert_close(preds.y, model(x).y)
