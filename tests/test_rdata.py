"""pyluz.rdata: .rds files in and out through rpy2 (never together with reticulate)."""

import pandas as pd
import pytest
import torch
from torch import nn

pytest.importorskip("rpy2.robjects")
import rpy2.robjects as ro  # noqa: E402

import pyluz  # noqa: E402
from pyluz import rdata  # noqa: E402


@pytest.fixture
def iris_rds(tmp_path):
    path = tmp_path / "iris.rds"
    ro.r(f'saveRDS(iris, "{path}")')  # R's own bundled data set
    return path


def test_read_rds_data_frame_and_matrix(iris_rds, tmp_path):
    df = rdata.read_rds(iris_rds)
    assert df.shape == (150, 5) and df["Sepal.Length"].iloc[0] == 5.1
    assert list(df["Species"].cat.categories) == ["setosa", "versicolor", "virginica"]
    m_path = tmp_path / "m.rds"
    ro.r(f'saveRDS(matrix(c(1, 2, 3, 4, 5, 6), nrow = 2), "{m_path}")')
    assert rdata.read_rds(m_path).tolist() == [[1, 3, 5], [2, 4, 6]]  # R's column-major fill kept


def test_rds_dataset_and_fit(iris_rds):
    ds = rdata.rds_dataset(iris_rds, target="Species")
    x, y = ds.tensors
    assert x.dtype == torch.float32 and x.shape == (150, 4) and y.dtype == torch.int64
    assert ds.classes == ["setosa", "versicolor", "virginica"] and y[:50].eq(0).all() and y[-1] == 2
    torch.manual_seed(0)
    fitted = (
        pyluz.setup(
            nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=[pyluz.metrics.Accuracy()]
        )
        .set_hparams(in_features=4, out_features=3)
        .set_opt_hparams(lr=0.05)
        .fit(ds, epochs=30, verbose=False, dataloader_options={"batch_size": 16})
    )
    assert fitted.evaluate(ds)["acc"] > 0.9
    with pytest.raises(ValueError, match="not a column"):
        rdata.rds_dataset(iris_rds, target="species")


def test_write_rds_round_trip(tmp_path):
    frame = pd.DataFrame({"set": ["train", "valid"], "metric": ["loss", "loss"], "epoch": [1, 1], "value": [0.5, 0.25]})
    rdata.write_rds(frame, tmp_path / "metrics.rds")
    assert list(ro.r(f'readRDS("{tmp_path / "metrics.rds"}")$value')) == [0.5, 0.25]
    rdata.write_rds(torch.arange(6.0).reshape(3, 2), tmp_path / "pred.rds")
    assert list(ro.r(f'dim(readRDS("{tmp_path / "pred.rds"}"))')) == [3, 2]
    assert list(ro.r(f'readRDS("{tmp_path / "pred.rds"}")[3, ]')) == [4.0, 5.0]
    with pytest.raises(TypeError, match="`value`"):
        rdata.write_rds({"a": 1}, tmp_path / "x.rds")
