"""The default loop does not read device values per step.

On CPU there is no device sync to detect, so the test makes every host-reading tensor method raise
while training batches run; the GPU version (`torch.cuda.set_sync_debug_mode`) lives in
tests/test_cuda.py.
"""

import pytest
import torch
from torch import nn

import pyluz
from helpers import Net

SYNCING = ["item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu"]


class ForbidSyncs(pyluz.Callback):
    """Patches Tensor's host-reading methods from the first training batch to on_train_end.

    (Starting an epoch's iterator draws seeds with .item() on CPU tensors, as DataLoader does;
    that is once per epoch and never a device read.)
    """

    weight = -1  # runs before MetricsCallback's phase-end compute, which may sync

    def __init__(self, monkeypatch):
        self.mp = monkeypatch
        self.batches = 0

    def on_train_batch_begin(self):
        if self.ctx.iter != 1:
            return

        def forbidden(name):
            def raiser(*args, **kwargs):
                raise AssertionError(f"Tensor.{name} called during a training step")

            return raiser

        for name in SYNCING:
            self.mp.setattr(torch.Tensor, name, forbidden(name))

    def on_train_batch_end(self):
        self.batches += 1

    def on_train_end(self):
        self.mp.undo()


@pytest.mark.parametrize("as_loader", [False, True])
def test_training_steps_do_not_read_tensors(xy, monkeypatch, as_loader):
    x, y = xy
    data = (x, y)
    if as_loader:
        data = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x, y), batch_size=16
        )  # RandomSampler itself calls .tolist()
    guard = ForbidSyncs(monkeypatch)  # SGD: Adam reads its CPU step counter with .item() on CPU
    metrics = [pyluz.metrics.Accuracy(), pyluz.metrics.MulticlassAUROC(average="macro")]
    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, metrics=metrics)
        .set_opt_hparams(lr=0.01, momentum=0.9)
        .fit(
            data,
            epochs=2,
            verbose=False,
            callbacks=[guard],
            dataloader_options=None if as_loader else {"batch_size": 16},
        )
    )
    assert guard.batches == 12
    assert set(fitted.records["metrics"]["train"][1]) == {"loss", "acc", "auc"}
