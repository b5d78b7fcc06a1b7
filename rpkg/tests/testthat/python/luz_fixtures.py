"""Python side of the R package's luz tests: a teammate's module, the same training run from
Python (parity test), a thread to call R from (guard test)."""

import threading

import numpy as np
import torch
from torch import nn

import pyluz


class Net(nn.Module):
    """A small MLP classifier, as a teammate would write it in Python."""

    def __init__(self, n_in=4, hidden=16, n_out=3):
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)
        self.fc2 = nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))

    def predict(self, x, temperature=1.0):
        return torch.softmax(self.forward(x) / temperature, dim=1)


def as_tensors(x, y):
    return torch.tensor(np.asarray(x), dtype=torch.float32), torch.tensor(np.asarray(y), dtype=torch.int64)


def train_python(x, y, seed, epochs=3, lr=0.01, batch_size=16, valid=0.25, hidden=16, valid_rows=None):
    """What the R parity test does, written in Python: returns the records.

    `valid_rows`: the 0-based rows R's `sample.int()` held out (R draws them, Python by default doesn't).
    """
    x, y = as_tensors(x, y)
    if valid_rows is not None:
        rows = [int(r) for r in np.atleast_1d(valid_rows)]
        valid = pyluz.data.HeldOut(valid, lambda n, k: rows)
    torch.manual_seed(int(seed))
    fitted = (pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam,
                          metrics=[pyluz.metrics.Accuracy()])
              .set_hparams(n_in=x.shape[1], hidden=hidden, n_out=int(y.max()) + 1)
              .set_opt_hparams(lr=lr)
              .fit((x, y), epochs=int(epochs), valid_data=valid, verbose=False,
                   dataloader_options={"batch_size": int(batch_size)}))
    return {"records": fitted.records["metrics"],
            "weight": fitted.model.fc1.weight.detach().numpy().astype("float64")}


def call_in_thread(fn, *args):
    """Call `fn` from another thread; returns the error message (or None if it ran)."""
    out = {}

    def run():
        try:
            fn(*args)
            out["error"] = None
        except Exception as e:  # noqa: BLE001
            out["error"] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out["error"]
