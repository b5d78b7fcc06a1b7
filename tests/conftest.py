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
