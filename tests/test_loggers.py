"""CSVLogger and TensorBoard: files read back and compared with the records."""

import csv

import pandas as pd
import pytest
import torch
from torch import nn

import pyluz
from helpers import TwoOpt, regression_data
from pyluz.callbacks import CSVLogger, TensorBoard
from pyluz.metrics import MAE, MSE, MetricSet


def data(n=64, seed=0):
    return regression_data(n, seed, noise=0.1)


def regression(metrics=None):
    return (
        pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=metrics)
        .set_hparams(in_features=3, out_features=1)
        .set_opt_hparams(lr=0.05)
    )


class LinesAtEpochEnd(pyluz.Callback):
    weight = 1  # after the logger

    def __init__(self, path):
        self.path, self.counts = path, []

    def on_epoch_end(self):
        with open(self.path) as f:
            self.counts.append(len(f.read().splitlines()))


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_logger_exact_contents_with_different_train_and_valid_metrics(tmp_path):
    path = tmp_path / "sub" / "log.csv"
    lines = LinesAtEpochEnd(path)
    fitted = regression(MetricSet([MAE()], valid_metrics=[MSE()])).fit(
        data(), epochs=3, valid_data=data(32, 1), callbacks=[CSVLogger(path), lines], verbose=False
    )
    rows = read_rows(path)
    assert rows[0] == ["epoch", "set", "loss", "mae", "mse"]
    expected = []
    for epoch in range(1, 4):
        train = fitted.records["metrics"]["train"][epoch - 1]
        valid = fitted.records["metrics"]["valid"][epoch - 1]
        expected.append([str(epoch), "train", repr(train["loss"]), repr(train["mae"]), ""])
        expected.append([str(epoch), "valid", repr(valid["loss"]), repr(valid["mae"]), repr(valid["mse"])])
    assert rows[1:] == expected
    assert lines.counts == [3, 5, 7]  # written at each epoch's end, header once
    df = pd.read_csv(path, float_precision="round_trip")
    assert list(df["set"]) == ["train", "valid"] * 3
    assert df["mse"].isna().tolist() == [True, False] * 3
    assert df.loc[5, "mse"] == fitted.records["metrics"]["valid"][2]["mse"]


def test_csv_logger_per_optimizer_loss_and_rewrite_on_new_fit(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(str(path))
    fitted = pyluz.setup(TwoOpt, loss=nn.MSELoss()).fit(data(), epochs=2, callbacks=[logger], verbose=False)
    rows = read_rows(path)
    assert rows[0] == ["epoch", "set", "loss_gen", "loss_disc"]
    assert rows[1:] == [
        [str(e), "train", repr(r["loss"]["gen"]), repr(r["loss"]["disc"])]
        for e, r in enumerate(fitted.records["metrics"]["train"], start=1)
    ]
    # Reusing the instance: the file describes the new fit only.
    regression().fit(data(), epochs=1, callbacks=[logger], verbose=False)
    assert [r[:2] for r in read_rows(path)] == [["epoch", "set"], ["1", "train"]]


def test_csv_logger_validates_path():
    with pytest.raises(TypeError, match="CSVLogger: `path`"):
        CSVLogger(3)


def read_events(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def test_tensorboard_scalars_equal_records(tmp_path):
    fitted = regression([MAE()]).fit(
        data(), epochs=3, valid_data=data(32, 1), callbacks=[TensorBoard(tmp_path / "logs")], verbose=False
    )
    acc = read_events(tmp_path / "logs")
    tags = acc.Tags()
    assert set(tags["scalars"]) == {"train/loss", "train/mae", "valid/loss", "valid/mae"}
    assert tags["histograms"] == []
    for set_name in ("train", "valid"):
        for metric in ("loss", "mae"):
            events = acc.Scalars(f"{set_name}/{metric}")
            assert [e.step for e in events] == [1, 2, 3]
            expected = [r[metric] for r in fitted.records["metrics"][set_name]]
            assert [e.value for e in events] == pytest.approx(expected, rel=1e-6)


def test_tensorboard_per_optimizer_loss_and_histograms(tmp_path):
    fitted = pyluz.setup(TwoOpt, loss=nn.MSELoss()).fit(
        data(), epochs=2, valid_data=data(32, 1), callbacks=[TensorBoard(tmp_path, histograms=True)], verbose=False
    )
    acc = read_events(tmp_path)
    tags = acc.Tags()
    assert set(tags["scalars"]) == {f"{s}/loss/{o}" for s in ("train", "valid") for o in ("gen", "disc")}
    assert [e.value for e in acc.Scalars("valid/loss/disc")] == pytest.approx(
        [r["loss"]["disc"] for r in fitted.records["metrics"]["valid"]], rel=1e-6
    )
    assert set(tags["histograms"]) == {"weights/a.weight", "weights/a.bias", "weights/b.weight", "weights/b.bias"}
    hist = acc.Histograms("weights/a.weight")
    assert [h.step for h in hist] == [1, 2]
    # The last histogram summarizes the final weights.
    w = fitted.model.a.weight.detach()
    assert hist[-1].histogram_value.num == w.numel()
    assert hist[-1].histogram_value.sum == pytest.approx(w.sum().item(), rel=1e-5, abs=1e-6)


def test_tensorboard_selected_histograms_and_errors(tmp_path):
    regression().fit(data(), epochs=2, callbacks=[TensorBoard(tmp_path, histograms=["bias"])], verbose=False)
    assert read_events(tmp_path).Tags()["histograms"] == ["weights/bias"]
    with pytest.raises(pyluz.CallbackError, match="unknown parameters \\['nope'\\].*'weight', 'bias'"):
        regression().fit(data(), epochs=1, callbacks=[TensorBoard(tmp_path / "x", histograms=["nope"])], verbose=False)
    with pytest.raises(TypeError, match="`histograms`"):
        TensorBoard(tmp_path, histograms=3)


class CrashAt(pyluz.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self):
        if self.ctx.epoch == self.epoch:
            raise RuntimeError("crash")


def test_csv_logger_after_auto_resume_has_every_epoch(tmp_path):
    path = tmp_path / "log.csv"

    def run(extra):
        torch.manual_seed(0)
        return regression([MAE()]).fit(
            data(),
            epochs=4,
            valid_data=data(32, 1),
            verbose=False,
            callbacks=[CSVLogger(path), *extra, pyluz.callbacks.AutoResume(tmp_path / "state.pt")],
        )

    with pytest.raises(pyluz.CallbackError, match="crash"):
        run([CrashAt(3)])
    fitted = run([])
    df = pd.read_csv(path, float_precision="round_trip")
    assert df["epoch"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    expected = [
        r["loss"]
        for e in range(4)
        for r in (fitted.records["metrics"]["train"][e], fitted.records["metrics"]["valid"][e])
    ]
    assert df["loss"].tolist() == expected
