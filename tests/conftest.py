"""Fixtures shared by the tests; helper classes and data factories are in helpers.py."""

import pytest

from helpers import classification_data


@pytest.fixture
def xy():
    return classification_data(96, 0, label=lambda x: (x[:, 0] + x[:, 1] > 0).long())


@pytest.fixture
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
