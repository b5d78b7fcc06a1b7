import pytest
import torch
from torch import nn


class Net(nn.Module):
    """A tiny classifier used across tests."""

    def __init__(self, n_in=4, hidden=8, n_out=2, dropout=0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))

    def forward(self, x):
        return self.body(x)


@pytest.fixture
def xy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, y


class TwoOpt(nn.Module):
    """Two linear heads, each with its own optimizer ("gen" and "disc")."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 1)
        self.b = nn.Linear(3, 1)

    def forward(self, x):
        return self.a(x) + self.b(x)

    def set_optimizers(self, lr=0.1):
        return {"gen": torch.optim.SGD(self.a.parameters(), lr=lr),
                "disc": torch.optim.SGD(self.b.parameters(), lr=lr)}


def regression_data(n=64, seed=0):
    """x (n, 3) and y = row sums (n, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, x.sum(1, keepdim=True)


@pytest.fixture
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
