"""A seeded training run with AutoResume, used by tests/test_auto_resume.py (in-process and as a subprocess).

Everything that makes resuming hard is in it: shuffled batches (torch RNG), dropout (torch RNG), a
loss scaled with Python's `random` and numpy's global RNG, Adam (optimizer state), a step LR
schedule kept in a callback (callback state), EarlyStopping state and a validation split.

As a script::

    python tests/scripts/resume_run.py --state S.pt --out final.safetensors [--kill-at N] [--kill-in-write K]

`--kill-at N` sends SIGKILL to itself at the N-th breakpoint call counted by `Killer` (batch and epoch
breakpoints, counted in this process); `--kill-in-write K` sends SIGKILL halfway through writing the
K-th checkpoint. Without them it finishes and saves the fitted model to `--out`.
"""

import argparse
import os
import random
import signal
import sys

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import pyluz  # noqa: E402
from pyluz.callbacks import AutoResume, EarlyStopping  # noqa: E402

EPOCHS = 6


class Net(nn.Module):
    def __init__(self, n_in=6, hidden=16, n_out=3, dropout=0.3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))

    def forward(self, x):
        return self.body(x)


class RowDataset(Dataset):
    """A map-style dataset (not tensors), so batches go through a real DataLoader with a RandomSampler."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class NoisyLoss(pyluz.Callback):
    """Scales the loss with Python's and numpy's RNGs, so their states matter."""

    def on_train_batch_after_loss(self):
        self.ctx.loss_grad = self.ctx.loss_grad * (1 + 0.2 * random.random()) * (1 + 0.2 * float(np.random.rand()))


class StepLR(pyluz.Callback):
    """A StepLR schedule owned by a callback (restored through its state_dict)."""

    def on_fit_begin(self):
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.ctx.opt, step_size=2, gamma=0.5)

    def on_epoch_end(self):
        self.scheduler.step()

    def state_dict(self):
        return self.scheduler.state_dict()

    def load_state_dict(self, state):
        self.scheduler.load_state_dict(state)


class Killer(pyluz.Callback):
    """SIGKILLs this process at the `at`-th call of its breakpoints (no sleeps, no signals from outside)."""

    def __init__(self, at):
        self.at, self.count = at, 0

    def _tick(self):
        self.count += 1
        if self.count == self.at:
            os.kill(os.getpid(), signal.SIGKILL)

    on_epoch_begin = on_train_batch_begin = on_train_batch_after_loss = on_train_batch_end = _tick
    on_valid_batch_end = on_epoch_end = _tick


def events_per_run(n_train_batches, n_valid_batches, epochs=EPOCHS):
    return epochs * (2 + 3 * n_train_batches + n_valid_batches)


def data(kind="tensors"):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return (x, y) if kind == "tensors" else RowDataset(x, y)


def fit(state_path, callbacks=(), kind="tensors", epochs=EPOCHS, patience=100, min_delta=0, late=()):
    """One run, seeded as a script would be at its start. `late` callbacks come after AutoResume."""
    torch.manual_seed(42)
    random.seed(42)
    np.random.seed(42)
    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.02)
    cbs = [
        NoisyLoss(),
        StepLR(),
        *callbacks,
        EarlyStopping(patience=patience, min_delta=min_delta),
        AutoResume(state_path),
        *late,
    ]
    return model.fit(
        data(kind), epochs=epochs, valid_data=0.2, callbacks=cbs, verbose=False, dataloader_options={"batch_size": 16}
    )


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--kind", default="tensors")
    parser.add_argument("--kill-at", type=int, default=None)
    parser.add_argument("--kill-in-write", type=int, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    callbacks = [Killer(args.kill_at)] if args.kill_at else []
    if args.kill_in_write:
        real_save, writes = torch.save, [0]

        def save_then_die(obj, f, *a, **k):
            writes[0] += 1
            if writes[0] == args.kill_in_write:
                buf = __import__("io").BytesIO()
                real_save(obj, buf, *a, **k)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *a, **k)

        torch.save = save_then_die
    fitted = fit(args.state, callbacks, kind=args.kind)
    fitted.save(args.out)


if __name__ == "__main__":
    main()
