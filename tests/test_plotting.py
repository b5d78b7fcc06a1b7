"""Fitted.plot(): a metric x set grid whose lines carry exactly the recorded values."""

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import pyluz
from helpers import regression_data
from pyluz.metrics import MAE, MSE, MetricSet
from pyluz.plotting import plot_metrics


pytestmark = pytest.mark.usefixtures("close_figures")
data = regression_data


def fit(metrics, valid=True, epochs=3):
    return (
        pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=metrics)
        .set_hparams(in_features=3, out_features=1)
        .set_opt_hparams(lr=0.05)
        .fit(data(), epochs=epochs, valid_data=data(32, 1) if valid else None, verbose=False)
    )


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_plot_has_a_panel_per_metric_with_train_and_valid_on_it(tmp_path):
    fitted = fit([MAE()])
    fig = fitted.plot()
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "mae"]
    for ax, metric in zip(fig.axes, ["loss", "mae"], strict=True):
        lines = lines_by_label(ax)
        assert list(lines) == ["train", "valid"]
        for set_name, line in lines.items():
            expected = [r[metric] for r in fitted.records["metrics"][set_name]]
            np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
            np.testing.assert_array_equal(line.get_ydata(), expected)
            assert line.get_marker() == "o"
        assert lines["train"].get_linestyle() == "-" and lines["valid"].get_linestyle() == "--"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "valid"]
    assert fig.axes[-1].get_xlabel() == "epoch"
    path = tmp_path / "metrics.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_with_a_valid_only_metric_and_no_validation():
    fitted = fit(MetricSet(valid_metrics=[MSE()]))
    axes = fitted.plot().axes
    assert list(lines_by_label(axes[1])) == ["valid"]  # no mse in training
    np.testing.assert_array_equal(
        lines_by_label(axes[1])["valid"].get_ydata(), [r["mse"] for r in fitted.records["metrics"]["valid"]]
    )
    axes = fit(None, valid=False, epochs=2).plot().axes
    assert [ax.get_title() for ax in axes] == ["loss"] and list(lines_by_label(axes[0])) == ["train"]


@pytest.mark.parametrize("inline", [True, False])
def test_figures_show_once_in_a_notebook(monkeypatch, inline):
    import matplotlib.pyplot as plt

    from pyluz import plotting

    # Under the inline backend pyplot shows every figure it holds when the cell ends, and the
    # notebook shows the returned one too: pyplot must not hold it then. Elsewhere plt.show() works.
    monkeypatch.setattr(plotting, "_inline_backend", lambda: inline)
    fitted = fit(None, epochs=2)
    figures = [fitted.plot()]
    x = torch.randn(64, 3)
    module = pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_hparams(
        in_features=3, out_features=1
    )
    figures.append(pyluz.lr_finder(module, (x, x[:, :1]), steps=5, verbose=False).plot())
    held = {plt.figure(n) for n in plt.get_fignums()} if plt.get_fignums() else set()
    assert all((fig in held) != inline for fig in figures)


def test_plot_metrics_validates_its_input():
    with pytest.raises(TypeError, match="`df` must be a DataFrame with columns set, metric, epoch, value"):
        plot_metrics([1, 2])
    with pytest.raises(ValueError, match="no recorded metrics"):
        plot_metrics(pd.DataFrame(columns=["set", "metric", "epoch", "value"]))
