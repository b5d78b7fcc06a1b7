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

from .checks import check_choice
from .records import INT32_MAX


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
    a matrix or array a numpy array, a vector a numpy array. R's NA is NaN in double columns,
    `pd.NA` in integer columns (nullable `Int32`) and a missing category in factors."""
    ro, converter = _robjects()
    from rpy2.robjects.conversion import localconverter

    with localconverter(converter):
        value = ro.r["readRDS"](str(path))
    if isinstance(value, pd.DataFrame):
        return _with_integer_na(value.reset_index(drop=True))
    return np.asarray(value)


R_NA_INTEGER = -(2**31)  # how R's NA_integer_ arrives through rpy2: a plain int32 value


def _with_integer_na(frame):
    """Integer columns holding R's NA as nullable `Int32` with `pd.NA`, not the number -2147483648."""
    for column in frame.columns:
        values = frame[column]
        if values.dtype == np.int32 and (values == R_NA_INTEGER).any():
            data = values.to_numpy()
            frame[column] = pd.arrays.IntegerArray(data, data == R_NA_INTEGER)
    return frame


def features_array(features):
    """float32 (rows, columns) of numeric columns, missing values as NaN.

    R's NA_real_ is a NaN with a payload, which a float64 -> float32 cast flags as invalid, so NaNs
    are made plain NaN in float64 first.
    """
    columns = [features[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in features.columns]
    array = np.stack(columns, axis=1) if columns else np.zeros((len(features), 0))
    array[np.isnan(array)] = np.nan
    return torch.tensor(array.astype(np.float32))


def rds_dataset(path, target=None, na="error"):
    """A TensorDataset from an `.rds` data frame or matrix.

    `target` names the target column of a data frame (or is a column index of a matrix, 0-based).
    Numeric feature columns become float32; a factor target becomes 0-based class indices (int64)
    with the level names in `dataset.classes`; an integer target int64; a double target float32.
    `na`: what R's NA in the features does: ``"error"`` (default: a ValueError naming the columns)
    or ``"keep"`` (NaN in the float32 features, for a model that handles them). An NA in the
    target is always an error.
    """
    check_choice(na, "na", ("error", "keep"), owner="rds_dataset")
    value = read_rds(path)
    if isinstance(value, np.ndarray):
        value = pd.DataFrame(value.reshape(len(value), -1))
    if target is not None and target not in value.columns:
        raise ValueError(f"`target` {target!r} is not a column of {path}; columns: {list(value.columns)}.")
    features = value.drop(columns=[target]) if target is not None else value
    bad = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if bad:
        raise TypeError(f"{path}: feature columns must be numeric, but {bad} are not; encode them in R first.")
    missing = features.isna()
    if na == "error" and missing.to_numpy().any():
        counts = {c: int(n) for c, n in missing.sum().items() if n}
        raise ValueError(
            f"{path}: feature columns have NA values (count per column: {counts}); remove or impute them "
            'in R, or pass na="keep" to get them as NaN.'
        )
    x = features_array(features)
    if target is None:
        dataset = TensorDataset(x)
        dataset.classes = None
        return dataset
    column = value[target]
    if column.isna().any():
        raise ValueError(
            f"{path}: the target column {target!r} has {int(column.isna().sum())} NA values; drop those rows in R."
        )
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


def _plain_row_names(value):
    return isinstance(value.index, pd.RangeIndex) and value.index.start == 0 and value.index.step == 1


def _to_r(ro, value, where):
    """An R object for `value` (see `write_rds`); `where` names the part in errors."""
    from rpy2.robjects.conversion import localconverter

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, pd.DataFrame):
        with localconverter(_robjects()[1]):
            robj = ro.conversion.get_conversion().py2rpy(value)
        if _plain_row_names(value):
            # pandas' 0..n-1 index would become the character row names "0", "1", ...; R's own
            # data frames have compact integer row names, which `rownames<-`(NULL) gives back.
            robj = ro.r("function(x) { rownames(x) <- NULL; x }")(robj)
        return robj
    if isinstance(value, np.ndarray):
        with localconverter(_robjects()[1]):
            return ro.conversion.get_conversion().py2rpy(value)
    if value is None:
        return ro.NULL
    if isinstance(value, (bool, np.bool_)):
        return ro.BoolVector([bool(value)])
    if isinstance(value, (int, np.integer)):
        # R integers are 32-bit (NA is their minimum); larger ints become doubles
        return ro.IntVector([int(value)]) if abs(int(value)) <= INT32_MAX - 1 else ro.FloatVector([float(value)])
    if isinstance(value, (float, np.floating)):
        return ro.FloatVector([float(value)])
    if isinstance(value, str):
        return ro.StrVector([value])
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"write_rds: the keys of {where} must be strings (R names), got {bad[:3]!r}.")
        items = {k: _to_r(ro, v, f"{where}[{k!r}]") for k, v in value.items()}
        return ro.r["list"](**items) if items else ro.r("list()")
    if isinstance(value, (list, tuple)):
        return ro.r["list"](*[_to_r(ro, v, f"{where}[{i}]") for i, v in enumerate(value)])
    raise TypeError(
        f"write_rds: {where} is a {type(value).__name__}; expected a DataFrame, numpy array, tensor, "
        "number, string, None, or a dict/list of them."
    )


def write_rds(value, path):
    """Write `value` as `.rds`, for R's `readRDS()`.

    A DataFrame (e.g. `fitted.get_metrics()`) becomes a data.frame (categoricals as factors; a
    default 0..n-1 index as R's own integer row names, so a frame read with `read_rds` and written
    back is `identical()` to the R original; any other index becomes the row names); a numpy array
    or tensor (e.g. predictions) an R array; a dict a named list and a list/tuple a list, nested
    as deep as needed, with numbers, strings, booleans and None (NULL) as length-one vectors, so
    `fitted.records` can be written whole.
    """
    ro, _ = _robjects()
    if not isinstance(value, (pd.DataFrame, np.ndarray, torch.Tensor, dict, list, tuple)):
        raise TypeError(
            f"`value` must be a pandas DataFrame, numpy array, tensor, dict or list, got {type(value).__name__}."
        )
    robj = _to_r(ro, value, "`value`")
    ro.r["saveRDS"](robj, str(path))
