"""R data files for Python users: read `.rds` data frames and matrices, write results as `.rds`.

Uses rpy2 (the optional extra `pyluz[r]`; on R 4.2 pin `rpy2==3.5.17`). Only for Python processes:
where R hosts this Python through reticulate 1.28, rpy2 would embed a second R binding and crash,
so this module refuses to load R there.

Example::

    from pyluz import rdata
    ds = rdata.rds_dataset("iris.rds", target="Species")   # factor -> class indices 0..K-1
    fitted = model.fit(ds, epochs=10)
    rdata.write_rds(fitted.get_metrics(), "metrics.rds")
"""

import sys

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset


def _robjects():
    if "rpytools" in sys.modules:  # this Python runs inside R through reticulate
        raise RuntimeError(
            "pyluz.rdata can't be used when R drives Python through reticulate (rpy2 and "
            "reticulate 1.28 crash together); read the data in R instead."
        )
    try:
        import rpy2.robjects as ro
        from rpy2.robjects import numpy2ri, pandas2ri
    except ImportError as e:
        raise ImportError("pyluz.rdata needs rpy2: pip install 'pyluz[r]' (on R 4.2: pip install rpy2==3.5.17).") from e
    # pandas' rules come last so data frames become DataFrames, not numpy record arrays.
    return ro, ro.default_converter + numpy2ri.converter + pandas2ri.converter


def read_rds(path):
    """Read an `.rds` file: a data.frame becomes a pandas DataFrame (factors as categoricals),
    a matrix or array a numpy array, a vector a numpy array."""
    ro, converter = _robjects()
    from rpy2.robjects.conversion import localconverter

    with localconverter(converter):
        value = ro.r["readRDS"](str(path))
    if isinstance(value, pd.DataFrame):
        return value.reset_index(drop=True)
    return np.asarray(value)


def rds_dataset(path, target=None):
    """A TensorDataset from an `.rds` data frame or matrix.

    `target` names the target column of a data frame (or is a column index of a matrix, 0-based).
    Numeric feature columns become float32; a factor target becomes 0-based class indices (int64)
    with the level names in `dataset.classes`; an integer target int64; a double target float32.
    """
    value = read_rds(path)
    if isinstance(value, np.ndarray):
        value = pd.DataFrame(value.reshape(len(value), -1))
    if target is not None and target not in value.columns:
        raise ValueError(f"`target` {target!r} is not a column of {path}; columns: {list(value.columns)}.")
    features = value.drop(columns=[target]) if target is not None else value
    bad = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if bad:
        raise TypeError(f"{path}: feature columns must be numeric, but {bad} are not; encode them in R first.")
    x = torch.tensor(features.to_numpy(dtype=np.float32))
    if target is None:
        dataset = TensorDataset(x)
        dataset.classes = None
        return dataset
    column = value[target]
    classes = None
    if isinstance(column.dtype, pd.CategoricalDtype):
        classes = [str(c) for c in column.cat.categories]
        y = torch.tensor(column.cat.codes.to_numpy(dtype=np.int64))
    elif pd.api.types.is_integer_dtype(column):
        y = torch.tensor(column.to_numpy(dtype=np.int64))
    elif pd.api.types.is_numeric_dtype(column):
        y = torch.tensor(column.to_numpy(dtype=np.float32))
    else:
        raise TypeError(f"{path}: the target column {target!r} must be a factor or numeric.")
    dataset = TensorDataset(x, y)
    dataset.classes = classes
    return dataset


def write_rds(value, path):
    """Write a DataFrame (e.g. `fitted.get_metrics()`), a numpy array or a tensor (e.g. predictions) as `.rds`."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, (pd.DataFrame, np.ndarray)):
        raise TypeError(f"`value` must be a pandas DataFrame, numpy array or tensor, got {type(value).__name__}.")
    ro, converter = _robjects()
    from rpy2.robjects.conversion import localconverter

    with localconverter(converter):
        robj = ro.conversion.get_conversion().py2rpy(value)
    ro.r["saveRDS"](robj, str(path))
