"""Shared test helpers (imported normally: `from helpers import Net`); fixtures live in conftest.py."""

import torch
from torch import nn


class Net(nn.Module):
    """A tiny classifier used across tests."""

    def __init__(self, n_in=4, hidden=8, n_out=2, dropout=0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))

    def forward(self, x):
        return self.body(x)


class TwoOpt(nn.Module):
    """Two linear heads, each with its own optimizer (named `names`, by default "gen" and "disc")."""

    def __init__(self, n_in=3, names=("gen", "disc")):
        super().__init__()
        self.names = names
        self.a = nn.Linear(n_in, 1)
        self.b = nn.Linear(n_in, 1)

    def forward(self, x):
        return self.a(x) + self.b(x)

    def set_optimizers(self, lr=0.1):
        first, second = self.names
        return {first: torch.optim.SGD(self.a.parameters(), lr=lr), second: torch.optim.SGD(self.b.parameters(), lr=lr)}


def regression_data(n=64, seed=0, features=3, weights=None, scale=1.0, noise=0.0):
    """x (n, features) and y = `scale` * the row sums (or `x @ weights`), plus `noise` * N(0, 1), from one generator."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = x.sum(1, keepdim=True) if weights is None else x @ torch.tensor(weights).reshape(-1, 1)
    if scale != 1.0:
        y = scale * y
    if noise:
        y = y + noise * torch.randn(n, 1, generator=g)
    return x, y


def classification_data(n=64, seed=0, features=4, label=None):
    """x (n, features) and class indices `label(x)` (default: 1 where x[:, 0] > x[:, 1], else 0)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    return x, (x[:, 0] > x[:, 1]).long() if label is None else label(x)


def hand_loop(model, opt, batches, loss_fn, epochs):
    """A plain PyTorch training loop (the reference fits are compared with): `batches` is iterated
    once per epoch (a DataLoader, or a list of `(x, y)` pairs, see `slices`)."""
    for _ in range(epochs):
        model.train()
        for xb, yb in batches:
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
    return model


def slices(x, y, sizes):
    """Consecutive `(x, y)` batches of the given sizes."""
    out, start = [], 0
    for size in sizes:
        out.append((x[start : start + size], y[start : start + size]))
        start += size
    return out


def resume_script():
    """`tests/scripts/resume_run.py` as a module (the child script the resume tests run, and the
    model, data and callbacks they share with it)."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "resume_run.py")
    spec = importlib.util.spec_from_file_location("resume_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
