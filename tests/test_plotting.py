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


def grid(fig, nrows, ncols):
    axes = fig.axes
    assert len(axes) == nrows * ncols
    return [axes[i * ncols : (i + 1) * ncols] for i in range(nrows)]


def test_plot_is_a_metric_by_set_grid_with_the_records(tmp_path):
    fitted = fit([MAE()])
    fig = fitted.plot()
    assert isinstance(fig, Figure)
    rows = grid(fig, 2, 2)
    assert [ax.get_title() for ax in rows[0]] == ["train", "valid"]
    for i, metric in enumerate(["loss", "mae"]):
        for j, set_name in enumerate(["train", "valid"]):
            (line,) = rows[i][j].get_lines()
            expected = [r[metric] for r in fitted.records["metrics"][set_name]]
            np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
            np.testing.assert_array_equal(line.get_ydata(), expected)
            assert line.get_marker() == "o" and line.get_linestyle() == "-"  # points + lines
        texts = [t.get_text() for t in rows[i][1].texts]
        assert texts == [metric]  # row strip, as facet_grid
    path = tmp_path / "metrics.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_with_a_valid_only_metric_and_no_validation():
    fitted = fit(MetricSet(valid_metrics=[MSE()]))
    rows = grid(fitted.plot(), 2, 2)
    assert rows[1][0].get_lines() == []  # no mse in training: empty panel
    np.testing.assert_array_equal(
        rows[1][1].get_lines()[0].get_ydata(), [r["mse"] for r in fitted.records["metrics"]["valid"]]
    )
    rows = grid(fit(None, valid=False, epochs=2).plot(), 1, 1)
    assert rows[0][0].get_title() == "train"


def test_plot_metrics_validates_its_input():
    with pytest.raises(TypeError, match="`df` must be a DataFrame with columns set, metric, epoch, value"):
        plot_metrics([1, 2])
    with pytest.raises(ValueError, match="no recorded metrics"):
        plot_metrics(pd.DataFrame(columns=["set", "metric", "epoch", "value"]))
