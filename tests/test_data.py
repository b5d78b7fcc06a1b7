"""Input adapters: every input kind, dataloader options, the fast path and the valid split."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import pyluz
from pyluz.data import TensorBatches, as_batches, split_valid
from conftest import Net


def batches_of(loader):
    return [b for b in loader]


def test_fast_path_yields_dataloader_batches_and_rng_use():
    x = torch.arange(50.0).unsqueeze(1)
    y = torch.arange(50)
    for shuffle, drop_last in [(True, True), (True, False), (False, False), (False, True)]:
        torch.manual_seed(7)
        ref = batches_of(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=shuffle, drop_last=drop_last))
        after_ref = torch.rand(1)
        torch.manual_seed(7)
        fast = as_batches((x, y), {"batch_size": 8, "shuffle": shuffle, "drop_last": drop_last}, "train")
        assert isinstance(fast, TensorBatches)
        got = batches_of(fast)
        assert len(got) == len(ref) == len(fast)
        for (a, b), (c, d) in zip(ref, got):
            assert torch.equal(a, c) and torch.equal(b, d)
        assert torch.equal(torch.rand(1), after_ref)  # same RNG consumption as a DataLoader


def test_train_defaults_shuffle_and_drop_last_valid_does_not():
    x = torch.arange(70.0)
    train = as_batches(x, None, "train")
    valid = as_batches(x, None, "valid")
    assert (train.batch_size, train.shuffle, train.drop_last, len(train)) == (32, True, True, 2)
    assert (valid.batch_size, valid.shuffle, valid.drop_last, len(valid)) == (32, False, False, 3)
    assert torch.equal(torch.cat([b[0] for b in valid]), x)


def test_dataloader_options_apply_to_arrays_and_tensors():  # luz drops them (SPEC §5.4)
    x = np.random.default_rng(0).normal(size=(20, 3))
    loader = as_batches(x, {"batch_size": 5, "shuffle": False}, "train")
    first = batches_of(loader)[0][0]
    assert first.shape == (5, 3) and first.dtype == torch.float32
    assert torch.allclose(first, torch.tensor(x[:5], dtype=torch.float32))


def test_input_kinds():
    x = np.arange(24, dtype=np.float64).reshape(12, 2)
    y = np.arange(12)
    opts = {"batch_size": 4, "shuffle": False}
    # tuple of arrays, ints become int64
    xb, yb = batches_of(as_batches((x, y), opts, "valid"))[0]
    assert xb.dtype == torch.float32 and yb.dtype == torch.int64 and yb.tolist() == [0, 1, 2, 3]
    # dict of tensors keeps keys
    b = batches_of(as_batches({"x": torch.tensor(x), "y": torch.tensor(y)}, opts, "valid"))[1]
    assert set(b) == {"x", "y"} and b["y"].tolist() == [4, 5, 6, 7]
    # pandas
    df = pd.DataFrame(x, columns=["a", "b"])
    xb, yb = batches_of(as_batches((df, pd.Series(y)), opts, "valid"))[2]
    assert xb.shape == (4, 2) and yb.tolist() == [8, 9, 10, 11]
    # a map-style Dataset becomes a DataLoader with the options
    class Squares(Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return torch.tensor([float(i)]), torch.tensor(i * i)

    loader = as_batches(Squares(), opts, "valid")
    assert isinstance(loader, DataLoader) and loader.batch_size == 4
    assert batches_of(loader)[1][1].tolist() == [16, 25, 36, 49]

    # an IterableDataset of unknown length
    class Stream(IterableDataset):
        def __iter__(self):
            for i in range(6):
                yield torch.tensor([float(i)]), torch.tensor(i)

    assert [b[1].tolist() for b in as_batches(Stream(), opts, "valid")] == [[0, 1, 2, 3], [4, 5]]
    assert [b[1].tolist() for b in as_batches(Stream(), opts, "train")] == [[0, 1, 2, 3]]  # drop_last


def test_input_errors_name_the_argument():
    with pytest.raises(ValueError, match="`data`.*first dimension"):
        as_batches((torch.zeros(3, 2), torch.zeros(4)), None, "train")
    with pytest.raises(TypeError, match="Unsupported `valid_data`"):
        as_batches(object(), None, "valid", argument="valid_data")
    with pytest.raises(ValueError, match="batch_size"):
        as_batches(torch.zeros(3), {"batch_size": 0}, "train")
    dl = DataLoader(TensorDataset(torch.zeros(4)))
    with pytest.raises(ValueError, match="already a DataLoader"):
        as_batches(dl, {"batch_size": 2}, "train")
    with pytest.warns(UserWarning, match="ignored"):
        as_batches(dl, {"batch_size": 2}, "valid", argument="valid_data")


def test_valid_fraction_split_is_random_and_complete():
    x = torch.arange(100.0)
    torch.manual_seed(1)
    train, valid = split_valid((x,), 0.25)
    assert len(valid[0]) == 25 and len(train[0]) == 75
    assert sorted(torch.cat([train[0], valid[0]]).tolist()) == x.tolist()
    assert torch.equal(train[0], train[0].sort().values)  # training rows keep their order
    torch.manual_seed(1)
    assert torch.equal(split_valid((x,), 0.25)[1][0], valid[0])  # seeded by torch's RNG


def test_valid_fraction_rules():
    x = torch.arange(10.0)
    assert split_valid(x, 0) == (x, None)  # SPEC §5.5: 0 means no validation
    for bad in [1, 1.5, -0.1]:
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            split_valid(x, bad)
    with pytest.raises(ValueError, match="DataLoader"):
        split_valid(DataLoader(TensorDataset(x)), 0.2)


def test_fit_with_valid_fraction_records_valid_metrics(xy):
    fitted = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1) \
        .fit(xy, epochs=2, valid_data=0.25, verbose=False)
    assert len(fitted.records["metrics"]["valid"]) == 2
    fitted0 = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1) \
        .fit(xy, epochs=1, valid_data=0, verbose=False)
    assert fitted0.records["metrics"]["valid"] == []


def test_multi_input_batches_reach_the_model():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 1), nn.Linear(3, 1)

        def forward(self, inputs):  # luz convention: the input is passed as one object
            return (self.a(inputs["left"]) + self.b(inputs["right"])).squeeze(1)

    class Pairs(Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {"left": torch.randn(2, generator=g), "right": torch.randn(3, generator=g)}, torch.tensor(float(i % 2))

    fitted = pyluz.setup(TwoInputs, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1) \
        .fit(Pairs(), epochs=2, verbose=False, dataloader_options={"batch_size": 8})
    assert len(fitted.records["metrics"]["train"]) == 2
    preds = fitted.predict(Pairs(), dataloader_options={"batch_size": 8})
    assert preds.shape == (40,)
