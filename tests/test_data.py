"""Input adapters: every input kind, dataloader options, the fast path and the valid split."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import pyluz
from pyluz.data import HeldOut, TensorBatches, as_batches, split_valid
from helpers import Net


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
        for (a, b), (c, d) in zip(ref, got, strict=True):
            assert torch.equal(a, c) and torch.equal(b, d)
        assert torch.equal(torch.rand(1), after_ref)  # same RNG consumption as a DataLoader


def test_fast_path_with_a_generator_stays_in_step_with_dataloader_over_epochs():
    # A DataLoader's RandomSampler draws an extra permutation from a user generator when an epoch
    # ends; the fast path must too, or epoch 2 onwards differs.
    x = torch.arange(50.0).unsqueeze(1)
    y = torch.arange(50)
    for drop_last in (True, False):
        g_ref, g_fast = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        ref = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, drop_last=drop_last, generator=g_ref)
        fast = as_batches(
            (x, y), {"batch_size": 8, "shuffle": True, "drop_last": drop_last, "generator": g_fast}, "train"
        )
        assert isinstance(fast, TensorBatches)
        for _ in range(3):
            for (a, b), (c, d) in zip(batches_of(ref), batches_of(fast), strict=True):
                assert torch.equal(a, c) and torch.equal(b, d)
        assert torch.equal(g_ref.get_state(), g_fast.get_state())


def test_batch_size_must_be_a_positive_int_not_a_bool():
    for bad in (True, 0, -3, 2.5, None):
        with pytest.raises(ValueError, match=r"batch_size"):
            as_batches(torch.zeros(4, 1), {"batch_size": bad}, "train")
        with pytest.raises(ValueError, match=r"batch_size"):
            TensorBatches([torch.zeros(4, 1)], batch_size=bad)


def test_train_defaults_shuffle_and_drop_last_valid_does_not():
    x = torch.arange(70.0)
    train = as_batches(x, None, "train")
    valid = as_batches(x, None, "valid")
    assert (train.batch_size, train.shuffle, train.drop_last, len(train)) == (32, True, True, 2)
    assert (valid.batch_size, valid.shuffle, valid.drop_last, len(valid)) == (32, False, False, 3)
    assert torch.equal(torch.cat([b[0] for b in valid]), x)


def test_dataloader_options_apply_to_arrays_and_tensors():  # luz drops them (a bug)
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
    with pytest.raises(ValueError, match="already a dataloader"):
        as_batches(dl, {"batch_size": 2}, "train")
    with pytest.warns(UserWarning, match="ignored"):
        as_batches(dl, {"batch_size": 2}, "valid", argument="valid_data")
    # A layout with a non-array part is an error, not a Dataset of its 2 parts.
    with pytest.raises(TypeError, match=r"`data\[1\]` must be tensors or arrays, got NoneType"):
        as_batches((torch.zeros(4, 2), None), None, "train")
    with pytest.raises(TypeError, match=r"`data\['y'\]` must be tensors or arrays, got str"):
        as_batches({"x": torch.zeros(4, 2), "y": "labels"}, None, "train")
    for bad in ("abc", {"a": 1}):
        with pytest.raises(TypeError, match="Unsupported `data`"):
            as_batches(bad, None, "train")
    for empty in ((), [], {}):
        with pytest.raises(ValueError, match="`data` is an empty"):
            as_batches(empty, None, "train")


def test_python_lists_in_a_layout_and_lists_of_samples():
    x = torch.arange(12.0).reshape(6, 2)
    xb, yb = batches_of(as_batches((x, [0, 1, 2, 3, 4, 5]), {"batch_size": 3}, "valid"))[1]
    assert torch.equal(xb, x[3:]) and yb.dtype == torch.int64 and yb.tolist() == [3, 4, 5]
    samples = [(x[i], torch.tensor(i)) for i in range(6)]  # a list of samples is a map-style dataset
    loader = as_batches(samples, {"batch_size": 3}, "valid")
    assert isinstance(loader, DataLoader) and batches_of(loader)[1][1].tolist() == [3, 4, 5]


def test_valid_fraction_split_is_random_and_complete():
    x = torch.arange(100.0)
    torch.manual_seed(1)
    train, valid = split_valid((x,), 0.25)
    assert len(valid[0]) == 25 and len(train[0]) == 75
    assert sorted(torch.cat([train[0], valid[0]]).tolist()) == x.tolist()
    assert torch.equal(train[0], train[0].sort().values)  # training rows keep their order
    torch.manual_seed(1)
    assert torch.equal(split_valid((x,), 0.25)[1][0], valid[0])  # seeded by torch's RNG


def test_a_sampler_picks_the_held_out_rows():
    x = torch.arange(10.0)
    train, valid = split_valid((x,), 0.3, sample=lambda n, k: [7, 2, 5][:k])
    assert valid[0].tolist() == [7.0, 2.0, 5.0]  # in the order drawn
    assert train[0].tolist() == [0.0, 1.0, 3.0, 4.0, 6.0, 8.0, 9.0]
    assert split_valid((x,), 0.1, sample=lambda n, k: 4)[1][0].tolist() == [4.0]  # R's length-1 vector: a scalar
    for bad in ([1, 1, 2], [1, 2], [0, 3, 10]):
        with pytest.raises(ValueError, match=r"3 distinct row indices in \[0, 10\)"):
            split_valid((x,), 0.3, sample=lambda n, k, bad=bad: bad)
    with pytest.raises(TypeError, match="`sample`"):
        HeldOut(0.3, None)


def test_fit_holds_out_the_rows_a_held_out_sampler_picks(xy):
    seen = []

    class Valid(pyluz.Callback):
        def on_valid_batch_begin(self):
            seen.append(self.ctx.input.clone())

    rows = list(range(95, 71, -1))  # 24 of the 96 rows, last first
    pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1).fit(
        xy, epochs=1, valid_data=HeldOut(0.25, lambda n, k: rows[:k]), verbose=False, callbacks=[Valid()]
    )
    assert torch.equal(torch.cat(seen), xy[0][rows])


def test_valid_fraction_rules():
    x = torch.arange(10.0)
    assert split_valid(x, 0) == (x, None)  # 0 means no validation
    for bad in [1, 1.5, -0.1]:
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            split_valid(x, bad)
    with pytest.raises(ValueError, match="DataLoader"):
        split_valid(DataLoader(TensorDataset(x)), 0.2)


def test_valid_fraction_of_a_dataset_and_of_a_stream():
    class Rows(Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            return torch.tensor([float(i)]), torch.tensor(i)

    torch.manual_seed(2)
    train, valid = split_valid(Rows(), 0.25)
    train_ids = [int(train[i][1]) for i in range(len(train))]
    valid_ids = [int(valid[i][1]) for i in range(len(valid))]
    assert len(valid_ids) == 5 and sorted(train_ids + valid_ids) == list(range(20))
    assert train_ids == sorted(train_ids)

    class Stream(IterableDataset):
        def __iter__(self):
            yield from (torch.zeros(1) for _ in range(4))

    with pytest.raises(ValueError, match="`valid_data` can't be a fraction .*no known length"):
        split_valid(Stream(), 0.2)


def test_fit_with_valid_fraction_records_valid_metrics(xy):
    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=2, valid_data=0.25, verbose=False)
    )
    assert len(fitted.records["metrics"]["valid"]) == 2
    fitted0 = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=1, valid_data=0, verbose=False)
    )
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
            return {"left": torch.randn(2, generator=g), "right": torch.randn(3, generator=g)}, torch.tensor(
                float(i % 2)
            )

    fitted = (
        pyluz.setup(TwoInputs, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(Pairs(), epochs=2, verbose=False, dataloader_options={"batch_size": 8})
    )
    assert len(fitted.records["metrics"]["train"]) == 2
    preds = fitted.predict(Pairs(), dataloader_options={"batch_size": 8})
    assert preds.shape == (40,)


def test_a_layout_of_mixed_dtypes_keeps_each_parts_meaning():
    parts = [
        np.arange(8, dtype=np.float64).reshape(4, 2),
        np.arange(4, dtype=np.int32),
        torch.arange(4, dtype=torch.int32),
        torch.ones(4, dtype=torch.float16),
        np.array([True, False] * 2),
    ]
    batch = batches_of(as_batches(parts, {"batch_size": 4}, "valid"))[0]
    # arrays: floats -> float32, ints -> int64 (R double/integer conventions); tensors keep their dtype
    assert [b.dtype for b in batch] == [torch.float32, torch.int64, torch.int32, torch.float16, torch.bool]
    assert batch[0].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]] and batch[1].tolist() == [0, 1, 2, 3]


def test_no_training_batch_is_a_clear_error():
    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    x, y = torch.randn(10, 4), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="no training batch.*batch_size=32"):
        model.fit((x, y), epochs=1, verbose=False)
    fitted = model.fit((x, y), epochs=1, verbose=False, dataloader_options={"drop_last": False})
    assert len(fitted.records["metrics"]["train"]) == 1
