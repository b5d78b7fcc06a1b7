"""Fixtures shared by the tests; helper classes and data factories are in helpers.py."""

import pytest
import torch


@pytest.fixture
def xy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, y


@pytest.fixture
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
