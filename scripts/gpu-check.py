"""CUDA checks for a lent GPU machine (CI has no GPU): placement, no per-step syncs, AMP, DDP-free.

Run: .venv/bin/python scripts/gpu-check.py   (prints 'gpu-check: N passed, M failed')
"""

import sys
import traceback

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pyluz

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def run_checks():
    results = []
    for fn in CHECKS:
        try:
            fn()
            results.append((fn.__name__, None))
        except Exception:  # report every check, keep going
            results.append((fn.__name__, traceback.format_exc()))
    return results


def data(n=512):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 32, generator=g)
    return x, (x[:, 0] > 0).long()


def model():
    return pyluz.setup(lambda: nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 2)),
                       loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam,
                       metrics=[pyluz.metrics.Accuracy(), pyluz.metrics.MulticlassAUROC()]).set_opt_hparams(lr=1e-2)


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
            self.seen = {"input": self.ctx.input.device.type, "pred": self.ctx.pred.device.type,
                         "param": next(self.ctx.model.parameters()).device.type,
                         "metric": self.ctx.metrics["train"][1].correct.device.type}


@check
def placement_and_pinning():
    where = Where()
    x, y = data()
    dl = pyluz.data.as_batches(TensorDataset(x, y), {"batch_size": 32, "collate_fn": None}, "train",
                               pin_memory=pyluz.Accelerator().pin_memory)
    assert isinstance(dl, DataLoader) and dl.pin_memory, "DataLoaders built for CUDA pin memory"
    fitted = model().fit((x, y), epochs=1, verbose=False, callbacks=[where])
    assert where.seen == {"input": "cuda", "pred": "cuda", "param": "cuda", "metric": "cuda"}, where.seen
    assert fitted.predict(x).device.type == "cuda"


@check
def no_sync_fast_path():
    model().fit(data(), epochs=2, verbose=False, callbacks=[NoSync()], dataloader_options={"batch_size": 32})


@check
def no_sync_dataloader():
    x, y = data()
    model().fit(TensorDataset(x, y), epochs=2, verbose=False, callbacks=[NoSync()],
                dataloader_options={"batch_size": 32, "collate_fn": torch.utils.data.default_collate})


@check
def mixed_precision_fp16():
    seen = {}

    class Dtype(pyluz.Callback):
        def on_train_batch_after_pred(self):
            seen["pred"] = self.ctx.pred.dtype

    fitted = model().fit(data(), epochs=2, verbose=False,
                         callbacks=[pyluz.callbacks.MixedPrecision(), Dtype()])
    assert seen["pred"] == torch.float16, seen
    losses = [m["loss"] for m in fitted.records["metrics"]["train"]]
    assert losses[1] < losses[0], losses


@check
def verbose_progress_runs():
    model().fit(data(), epochs=1, verbose=True, valid_data=0.2)


if __name__ == "__main__":
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device")
        sys.exit(1)
    results = run_checks()
    failed = [(n, tb) for n, tb in results if tb]
    for name, tb in results:
        print(("PASS " if tb is None else "FAIL ") + name)
        if tb:
            print(tb)
    print(f"gpu-check: {len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)
