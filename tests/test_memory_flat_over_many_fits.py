"""50 fits inside one function keep the process's memory flat: each fitted model is freed when the
caller drops it (a hyperparameter loop, a script, a notebook cell). The control keeps 10 fitted
models and must grow by about their size, so the measurement can fail."""

import ctypes
import gc
import os

import torch
from torch import nn

import pyluz

MIB = 2**20
WIDTH = 1024  # a 1024 x 1024 linear layer: 4 MiB of weights per fitted model


def rss():
    """Resident memory of this process, in bytes (after a full collection and malloc_trim: freed heap
    goes back to the OS, so memory other tests freed can't hide the control's growth)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fit_once(x):
    return (
        pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=WIDTH, out_features=WIDTH)
        .set_opt_hparams(lr=0.01)
        .fit((x, x), epochs=1, verbose=False, dataloader_options={"batch_size": 64})
    )


def many_fits(n, keep=0):
    """RSS after each fit of a loop of `n` (the first `keep` fitted models are kept, the others dropped)."""
    torch.manual_seed(0)
    x = torch.randn(64, WIDTH)
    kept, sizes = [], []
    for i in range(n):
        fitted = fit_once(x)
        if i < keep:
            kept.append(fitted)
        del fitted
        sizes.append(rss())
    return sizes, kept


def test_fits_in_one_call_free_their_models():
    sizes, _ = many_fits(50)
    growth = (sizes[-1] - sizes[9]) / MIB  # from fit 10 on: allocator and import warm-up are done
    print(f"RSS fit 10: {sizes[9] / MIB:.1f} MiB, fit 50: {sizes[-1] / MIB:.1f} MiB")
    assert growth < 12, f"RSS grew by {growth:.1f} MiB from fit 10 to fit 50"


def test_control_kept_models_show_up():
    baseline, _ = many_fits(20)
    sizes, kept = many_fits(20, keep=10)
    assert len(kept) == 10
    growth = (sizes[-1] - baseline[-1]) / MIB
    print(f"RSS without keeping: {baseline[-1] / MIB:.1f} MiB, keeping 10: {sizes[-1] / MIB:.1f} MiB")
    assert growth > 30, f"keeping 10 models of 4 MiB grew RSS by only {growth:.1f} MiB"
