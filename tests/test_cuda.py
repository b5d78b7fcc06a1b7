"""CUDA checks (run on a machine with a GPU; skipped elsewhere): placement, pinned memory, no
host<->device sync per step, mixed precision.

Run them alone with `.venv/bin/python -m pytest -m cuda tests/test_cuda.py`.
"""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pyluz
from helpers import classification_data

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def data(n=512):
    return classification_data(n, 0, features=32, label=lambda x: (x[:, 0] > 0).long())


def model():
    return pyluz.setup(
        lambda: nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 2)),
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam,
        metrics=[pyluz.metrics.Accuracy(), pyluz.metrics.MulticlassAUROC()],
    ).set_opt_hparams(lr=1e-2)


class NoSync(pyluz.Callback):
    """Errors on any host<->device sync from the 2nd training batch to the end of the phase."""

    weight = -1

    def on_train_batch_begin(self):
        if self.ctx.iter == 2:
            torch.cuda.set_sync_debug_mode("error")

    def on_train_end(self):
        torch.cuda.set_sync_debug_mode(0)


class Where(pyluz.Callback):
    def __init__(self):
        self.seen = {}

    def on_train_batch_end(self):
        if self.ctx.iter == 1:
            self.seen = {
                "input": self.ctx.input.device.type,
                "pred": self.ctx.pred.device.type,
                "param": next(self.ctx.model.parameters()).device.type,
                "metric": self.ctx.metrics["train"][1].correct.device.type,
            }


def test_placement_and_pinning():
    where = Where()
    x, y = data()
    dl = pyluz.data.as_batches(
        TensorDataset(x, y), {"batch_size": 32, "collate_fn": None}, "train", pin_memory=pyluz.Accelerator().pin_memory
    )
    assert isinstance(dl, DataLoader) and dl.pin_memory, "DataLoaders built for CUDA pin memory"
    fitted = model().fit((x, y), epochs=1, verbose=False, callbacks=[where])
    assert where.seen == {"input": "cuda", "pred": "cuda", "param": "cuda", "metric": "cuda"}, where.seen
    assert fitted.predict(x).device.type == "cuda"


def test_no_sync_on_the_fast_path():
    model().fit(data(), epochs=2, verbose=False, callbacks=[NoSync()], dataloader_options={"batch_size": 32})


def test_no_sync_with_a_dataloader():
    x, y = data()
    model().fit(
        TensorDataset(x, y),
        epochs=2,
        verbose=False,
        callbacks=[NoSync()],
        dataloader_options={"batch_size": 32, "collate_fn": torch.utils.data.default_collate},
    )


def test_mixed_precision_runs_in_fp16_and_learns():
    seen = {}

    class Dtype(pyluz.Callback):
        def on_train_batch_after_pred(self):
            seen["pred"] = self.ctx.pred.dtype

    fitted = model().fit(data(), epochs=2, verbose=False, callbacks=[pyluz.callbacks.MixedPrecision(), Dtype()])
    assert seen["pred"] == torch.float16, seen
    losses = [m["loss"] for m in fitted.records["metrics"]["train"]]
    assert losses[1] < losses[0], losses


def test_verbose_progress_runs():
    model().fit(data(), epochs=1, verbose=True, valid_data=0.2)
