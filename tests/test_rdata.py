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
        rdata.write_rds({1, 2}, tmp_path / "x.rds")


def test_a_frame_read_and_written_back_is_identical_to_the_r_original(iris_rds, tmp_path):
    out = tmp_path / "iris2.rds"
    rdata.write_rds(rdata.read_rds(iris_rds), out)
    assert ro.r(f'identical(readRDS("{out}"), iris)')[0]
    assert list(ro.r(f'.row_names_info(readRDS("{out}"))')) == [-150]  # compact integer row names, as R's
    named = pd.DataFrame({"v": [1.5, 2.5]}, index=["a", "b"])
    rdata.write_rds(named, out)
    assert list(ro.r(f'rownames(readRDS("{out}"))')) == ["a", "b"]


def test_metrics_frame_written_from_a_fit_equals_the_r_frame(tmp_path):
    frame = pd.DataFrame({"set": ["train", "valid"], "metric": ["loss", "loss"], "epoch": [1, 2], "value": [0.5, 0.25]})
    rdata.write_rds(frame, tmp_path / "m.rds")
    same = ro.r(
        f'isTRUE(all.equal(readRDS("{tmp_path / "m.rds"}"), data.frame(set = c("train", "valid"), '
        'metric = c("loss", "loss"), epoch = c(1, 2), value = c(0.5, 0.25))))'
    )
    assert same[0]


def test_nested_records_are_written_as_named_lists(tmp_path):
    records = {
        "metrics": {"train": [{"loss": 0.5, "acc": [0.25, 0.75]}, {"loss": 0.4}], "valid": []},
        "profile": {"fit": [1.5]},
        "n": 3,
        "big": 3_000_000_007,
        "flag": True,
        "name": "x",
        "none": None,
        "t": torch.tensor([1.0, 2.0]),
    }
    path = tmp_path / "records.rds"
    rdata.write_rds(records, path)
    expected = (
        "list(metrics = list(train = list(list(loss = 0.5, acc = list(0.25, 0.75)), list(loss = 0.4)), "
        "valid = list()), profile = list(fit = list(1.5)), n = 3L, big = 3000000007, flag = TRUE, "
        'name = "x", none = NULL, t = array(c(1, 2)))'
    )
    assert ro.r(f'identical(readRDS("{path}"), {expected})')[0]
    with pytest.raises(TypeError, match=r"`value`\['bad'\] is a set"):
        rdata.write_rds({"bad": {1}}, path)
    with pytest.raises(TypeError, match="must be strings"):
        rdata.write_rds({1: 2}, path)


@pytest.fixture
def na_rds(tmp_path):
    path = tmp_path / "na.rds"
    ro.r(f'saveRDS(data.frame(a = c(1, NA, 3), b = c(1L, 2L, NA), y = c(0L, 1L, 1L)), "{path}")')
    return path


def test_na_in_features_is_an_error_or_kept_on_request(na_rds, tmp_path):
    frame = rdata.read_rds(na_rds)
    assert frame["b"].isna().tolist() == [False, False, True]  # not R's NA_integer_ as -2147483648
    with pytest.raises(ValueError, match=r"NA values \(count per column: \{'a': 1, 'b': 1\}\).*na=\"keep\""):
        rdata.rds_dataset(na_rds, target="y")
    x, y = rdata.rds_dataset(na_rds, target="y", na="keep").tensors
    assert torch.isnan(x).tolist() == [[False, False], [True, False], [False, True]]
    assert x[0].tolist() == [1.0, 1.0] and y.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match='`na` must be one of "error", "keep"'):
        rdata.rds_dataset(na_rds, target="y", na="drop")
    bad_target = tmp_path / "t.rds"
    ro.r(f'saveRDS(data.frame(a = c(1, 2), y = factor(c("u", NA))), "{bad_target}")')
    with pytest.raises(ValueError, match="target column 'y' has 1 NA values"):
        rdata.rds_dataset(bad_target, target="y")
