"""Bad inputs are clear errors that name the argument and say what was expected (no silent guess)."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import pyluz
from pyluz.metrics import Accuracy, BinaryAccuracy, MulticlassAUROC


def linear(n_in=4, n_out=2):
    return (
        pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=n_in, out_features=n_out)
        .set_opt_hparams(lr=0.1)
    )


def xy(n=64):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 4, generator=g), torch.randn(n, 2, generator=g)


@pytest.fixture(scope="module")
def fitted():
    return linear().fit(xy(), epochs=1, verbose=False)


# -- class-index metrics check their targets -------------------------------------------------------


@pytest.mark.parametrize(
    "metric, preds, target, message",
    [
        (
            Accuracy(index_base=1),
            torch.randn(4, 3),
            torch.tensor([0, 1, 2, 1]),
            r"1 value\(s\) of `target` are not class indices in 1\.\.3 .*use index_base=0",
        ),
        (Accuracy(), torch.randn(4, 3), torch.tensor([3, 1, 2, 1]), r"not class indices in 0\.\.2"),
        (Accuracy(), torch.randn(4, 3), torch.tensor([-1, 1, 2, 1]), r"not class indices in 0\.\.2"),
        (MulticlassAUROC(index_base=1), torch.rand(4, 3), torch.tensor([0, 1, 2, 3]), r"not class indices in 1\.\.3"),
        (BinaryAccuracy(), torch.rand(4), torch.tensor([0.0, 1.0, 2.0, 1.0]), r"are not 0 or 1"),
    ],
)
def test_class_index_metrics_check_targets(metric, preds, target, message):
    metric.update(preds, target)
    with pytest.raises(ValueError, match=message):
        metric.compute()


def test_valid_targets_still_compute():
    m = Accuracy(index_base=1)
    m.update(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([2, 1]))
    assert m.compute() == 1.0
    b = BinaryAccuracy()
    b.update(torch.tensor([0.2, 0.9]), torch.tensor([False, True]))
    assert b.compute() == 1.0


def test_a_bad_label_in_a_fit_names_the_metric():
    x = torch.randn(64, 4)
    y = torch.randint(0, 3, (64,))  # 0-based labels, but the metric is told they count from 1
    model = (
        pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, metrics=[Accuracy(index_base=1)])
        .set_hparams(in_features=4, out_features=3)
        .set_opt_hparams(lr=0.1)
    )
    with pytest.raises(pyluz.CallbackError, match=r"Accuracy.*not class indices in 1\.\.3"):
        model.fit((x, y), epochs=1, verbose=False)


# -- data options and splits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"shuffle": "yes"}, TypeError, r"`dataloader_options\['shuffle'\]` must be True or False"),
        ({"drop_last": 1}, TypeError, r"`dataloader_options\['drop_last'\]` must be True or False"),
        ({"num_workers": -1}, ValueError, r"`dataloader_options\['num_workers'\]` must be an integer >= 0, got -1"),
        (
            {1: 2},
            TypeError,
            r"`dataloader_options` must be a dict keyed by DataLoader argument names \(strings\), got the keys \[1\]",
        ),
    ],
)
def test_dataloader_options_are_checked(options, error, message):
    with pytest.raises(error, match=message):
        linear().fit(xy(), epochs=1, verbose=False, dataloader_options=options)


def test_an_empty_validation_split_is_an_error():
    x, y = xy(5)
    with pytest.raises(ValueError, match=r"`valid_data=0.1` of the 5 rows of `data` selects no validation row"):
        linear().fit((x, y), epochs=1, verbose=False, valid_data=0.1, dataloader_options={"batch_size": 2})
    with pytest.raises(ValueError, match="`valid_data` has no rows"):
        linear().fit(xy(), epochs=1, verbose=False, valid_data=(torch.randn(0, 4), torch.randn(0, 2)))


def test_predicting_zero_rows_gives_zero_rows_with_the_columns(fitted):
    out = fitted.predict(torch.randn(0, 4))
    assert isinstance(out, torch.Tensor) and out.shape == (0, 2)


def test_missing_data_is_named(fitted):
    with pytest.raises(ValueError, match=r"`newdata` must be the data for predict\(\).*, got None"):
        fitted.predict(None)
    with pytest.raises(ValueError, match=r"`data` must be the data for evaluate\(\).*, got None"):
        fitted.evaluate(None)


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(
        ValueError, match=r"`cuda_index` must be the index of a CUDA device of this machine \(it has 1: 0..0\), got 3"
    ):
        pyluz.Accelerator(cuda_index=3)


def test_cuda_index_without_cuda_warns(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match=r"`cuda_index=0` is ignored: no CUDA device"):
        acc = pyluz.Accelerator(cuda_index=0)
    assert acc.device.type in ("cpu", "mps")


# -- data that doesn't fit the model ------------------------------------------------------------------


def test_feature_count_mismatch_names_data_and_what_the_model_expects():
    x = torch.randn(64, 5)
    with pytest.raises(pyluz.InputMismatchError) as info:
        linear().fit((x, torch.randn(64, 2)), epochs=1, verbose=False)
    msg = str(info.value)
    assert "The first batch of `data`" in msg and "input shape (32, 5), float32" in msg
    assert "the model (Linear) expects 4 input features" in msg
    assert "mat1 and mat2 shapes cannot be multiplied" in msg  # torch's own text is kept
    assert isinstance(info.value, RuntimeError)  # code catching torch's RuntimeError still catches it


def test_mismatch_names_valid_data_and_newdata(fitted):
    with pytest.raises(pyluz.InputMismatchError, match="first batch of `valid_data`"):
        linear().fit(xy(), epochs=1, verbose=False, valid_data=(torch.randn(10, 3), torch.randn(10, 2)))
    with pytest.raises(pyluz.InputMismatchError, match=r"first batch of `newdata`.*input shape \(10, 3\)"):
        fitted.predict(torch.randn(10, 3))
    with pytest.raises(pyluz.InputMismatchError, match="first batch of `data`"):
        fitted.evaluate((torch.randn(10, 3), torch.randn(10, 2)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.uint8])
def test_float64_and_uint8_tensors_are_rejected_with_a_message(dtype):
    x = (torch.rand(64, 4) * 10).to(dtype)
    name = str(dtype).replace("torch.", "")
    with pytest.raises(
        pyluz.InputMismatchError,
        match=rf"The input is {name} but the model computes in float32: "
        r"convert it first \(e.g. `x.to\(torch.float32\)`\)",
    ):
        linear().fit((x, torch.randn(64, 2)), epochs=1, verbose=False)


def test_float64_numpy_arrays_are_converted():
    x, y = xy()
    fitted = linear().fit((x.double().numpy(), y.double().numpy()), epochs=1, verbose=False)
    assert len(fitted.records["metrics"]["train"]) == 1


@pytest.mark.parametrize("data", [lambda x: [x], lambda x: (x,)])
def test_inputs_without_a_target_are_named(data):
    x, _ = xy()
    with pytest.raises(pyluz.InputMismatchError, match=r"`data` gives no target: pass `\(x, y\)`"):
        linear().fit(data(x), epochs=1, verbose=False)


def test_a_frame_still_holding_its_target_column():
    x, _ = xy()
    df = pd.DataFrame(x.numpy(), columns=list("abcd"))
    df["y"] = np.arange(64) % 2
    with pytest.raises(ValueError, match=r"`data\[0\]` \(a DataFrame\) still holds the target column\(s\) \['y'\]"):
        linear().fit((df, df["y"]), epochs=1, verbose=False)


@pytest.mark.parametrize("target", [np.array(["a", "b"] * 32), pd.Series(["a", "b"] * 32)])
def test_string_targets(target):
    x, _ = xy()
    with pytest.raises(TypeError, match=r"`data\[1\]` holds strings; expected numbers.*factorize"):
        linear().fit((x, target), epochs=1, verbose=False)
