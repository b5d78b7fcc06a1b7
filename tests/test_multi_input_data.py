"""In-memory nested inputs (several inputs per model) in fit, evaluate and predict, vs hand-written loops."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data._utils.collate import default_collate

import pyluz
from pyluz.data import TensorBatches, as_batches
from pyluz.distributed import ShardedTensorBatches

N, BATCH, EPOCHS = 64, 16, 2


class TwoInputs(nn.Module):
    """A numeric part and a categorical part: takes `(num, cat)` or `{"num": ..., "cat": ...}`."""

    def __init__(self):
        super().__init__()
        self.num = nn.Linear(3, 4)
        self.cat = nn.Embedding(5, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, inputs):
        num, cat = (inputs["num"], inputs["cat"]) if isinstance(inputs, dict) else inputs
        return self.out(torch.relu(self.num(num) + self.cat(cat)))


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    num = torch.randn(N, 3, generator=g)
    cat = torch.randint(0, 5, (N,), generator=g)
    y = num.sum(1, keepdim=True) + cat.unsqueeze(1).float() / 5
    return num, cat, y


def model():
    return pyluz.setup(TwoInputs, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.05)


def fit(layout, **kwargs):
    torch.manual_seed(1)
    options = {"batch_size": BATCH, **kwargs.pop("options", {})}
    return model().fit(layout, epochs=EPOCHS, verbose=False, dataloader_options=options, **kwargs)


def hand_fit():
    """A plain DataLoader loop over the same rows (luz's defaults: shuffled, incomplete batch dropped)."""
    num, cat, y = data()
    torch.manual_seed(1)
    net = TwoInputs()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    loader = DataLoader(TensorDataset(num, cat, y), batch_size=BATCH, shuffle=True, drop_last=True)
    for _ in range(EPOCHS):
        for nb, cb, yb in loader:
            loss = nn.functional.mse_loss(net((nb, cb)), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
    return net


def same_weights(a, b):
    pa, pb = list(a.parameters()), list(b.parameters())
    return all(torch.allclose(p, q, atol=1e-6) for p, q in zip(pa, pb, strict=True))


def layouts(as_numpy=False):
    num, cat, y = data()
    if as_numpy:
        num, cat, y = num.numpy(), cat.numpy(), y.numpy()
    return {
        "tuple": ((num, cat), y),
        "x/y dict": {"x": {"num": num, "cat": cat}, "y": y},
        "input/target dict": {"input": (num, cat), "target": y},
    }


@pytest.mark.parametrize("as_numpy", [False, True], ids=["tensors", "numpy"])
@pytest.mark.parametrize("name", ["tuple", "x/y dict", "input/target dict"])
def test_fit_on_nested_inputs_trains_like_a_hand_written_loop(name, as_numpy):
    reference = hand_fit()
    fitted = fit(layouts(as_numpy)[name])
    assert same_weights(fitted.model, reference)


@pytest.mark.parametrize("name", ["tuple", "x/y dict", "input/target dict"])
def test_nested_inputs_use_the_fast_path_and_a_dataloader_alike(name):
    layout = layouts()[name]
    batches = as_batches(layout, {"batch_size": BATCH}, "train")
    assert isinstance(batches, TensorBatches)
    first = next(iter(batches))
    assert type(first) is (list if name == "tuple" else dict)
    # Any DataLoader option the fast path doesn't honour builds a DataLoader over the same structure.
    loader = as_batches(layout, {"batch_size": BATCH, "collate_fn": default_collate}, "train")
    assert isinstance(loader, DataLoader)
    assert same_weights(fit(layout, options={"collate_fn": default_collate}).model, hand_fit())


@pytest.mark.parametrize("name", ["tuple", "x/y dict", "input/target dict"])
def test_evaluate_on_nested_inputs_gives_the_hand_computed_loss(name):
    fitted = fit(layouts()[name])
    num, cat, y = data()
    with torch.no_grad():
        # The loss metric is the mean of the batch losses; 64 rows in batches of 16 weigh alike.
        expected = np.mean(
            [
                nn.functional.mse_loss(fitted.model((n, c)), t).item()
                for n, c, t in zip(num.split(BATCH), cat.split(BATCH), y.split(BATCH), strict=True)
            ]
        )
    evaluation = fitted.evaluate(layouts()[name], verbose=False, dataloader_options={"batch_size": BATCH})
    assert evaluation["loss"] == pytest.approx(expected, rel=1e-5)


def test_fit_with_a_valid_fraction_splits_nested_inputs():
    fitted = fit(layouts()["x/y dict"], valid_data=0.25)
    assert len(fitted.records["metrics"]["valid"]) == EPOCHS


def test_predict_takes_the_whole_tuple_as_the_inputs():
    fitted = fit(layouts()["tuple"])
    num, cat, _ = data()
    with torch.no_grad():
        expected = fitted.model((num, cat))
    for newdata in ((num, cat), [num, cat], (num.numpy(), cat.numpy())):
        got = fitted.predict(newdata, verbose=False, dataloader_options={"batch_size": 10})
        assert got.shape == (N, 1)
        assert torch.allclose(got, expected, atol=1e-6)
    by_name = fitted.predict({"num": num, "cat": cat}, verbose=False)
    assert torch.allclose(by_name, expected, atol=1e-6)
    # The same through a DataLoader the engine builds (an option the fast path doesn't take).
    via_loader = fitted.predict((num, cat), verbose=False, dataloader_options={"collate_fn": default_collate})
    assert torch.allclose(via_loader, expected, atol=1e-6)
    assert fitted.predict((num[:0], cat[:0]), verbose=False).shape == (0, 1)


def test_predict_of_one_array_or_a_tuple_of_one_is_that_array():
    x = torch.randn(10, 4)
    fitted = pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_hparams(
        in_features=4, out_features=2
    )
    fitted = fitted.fit((x, torch.randn(10, 2)), epochs=1, verbose=False, dataloader_options={"batch_size": 5})
    with torch.no_grad():
        expected = fitted.model(x)
    for newdata in (x, (x,), [x.numpy()]):
        assert torch.allclose(fitted.predict(newdata, verbose=False), expected)


def test_predict_from_a_dataset_keeps_the_fit_layout():
    # A Dataset's items are (x, y, ...) as in fit: the input is x, the rest is ignored.
    x, y = torch.randn(10, 4), torch.randn(10, 2)
    fitted = pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_hparams(
        in_features=4, out_features=2
    )
    fitted = fitted.fit((x, y), epochs=1, verbose=False, dataloader_options={"batch_size": 5})
    with torch.no_grad():
        expected = fitted.model(x)
    assert torch.allclose(fitted.predict(TensorDataset(x, y), verbose=False), expected)
    assert torch.allclose(fitted.predict(DataLoader(TensorDataset(x, y), batch_size=4), verbose=False), expected)


def test_nested_inputs_must_share_the_first_dimension():
    num, cat, y = data()
    with pytest.raises(ValueError, match=r"share the first dimension.*'data\[0\]\[1\]': 10"):
        fit(((num, cat[:10]), y))


def test_a_dict_batch_without_input_keys_is_an_error_naming_its_keys():
    num, cat, y = data()
    with pytest.raises(ValueError, match=r"dict with the keys \['num', 'cat', 'label'\].*'x'.*'input'"):
        fit({"num": num, "cat": cat, "label": y})


def test_ddp_shards_keep_the_nested_structure():
    rows = torch.arange(8)
    batches = TensorBatches([(rows, rows * 10), {"y": -rows}], batch_size=2)
    shard = list(ShardedTensorBatches(batches, rank=1, world_size=2))
    (a, b), target = shard[0]
    assert a.tolist() == [1, 3] and b.tolist() == [10, 30] and target["y"].tolist() == [-1, -3]
