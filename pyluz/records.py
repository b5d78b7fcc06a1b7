"""The layout of a fit's records, and the one rule that turns metric values into flat names.

`records["metrics"][set][epoch - 1]` is a dict `{name: value}` for `set` in "train"/"valid". A
value is a number, a dict (one number per optimizer: `{"gen": 0.5, "disc": 0.7}`) or a list
(one number per output). Wherever a value must become one column, row or monitor name (metrics
frames, CSV columns, TensorBoard tags, monitor names, prints), a dict value gives `<name>_<key>`
and a list `<name>_<i>` (0-based):

>>> flat_metrics({"loss": {"gen": 0.5, "disc": 0.7}, "acc": 0.9})
[('loss_gen', 0.5), ('loss_disc', 0.7), ('acc', 0.9)]
"""

import torch

from .files import MAX_NODES, PLAIN_LEAVES, check_plain_tree

SETS = ("train", "valid")


def empty_records():
    """The records of a fit that has not run an epoch yet."""
    return {"metrics": {"train": [], "valid": []}}


def flat_value(name, value, sep="_"):
    """`[(flat_name, number)]` of one metric value (see the module docstring)."""
    if isinstance(value, dict):
        return [(f"{name}{sep}{k}", v) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [(f"{name}{sep}{i}", v) for i, v in enumerate(value)]
    return [(name, value)]


def flat_metrics(values, sep="_"):
    """`[(flat_name, number)]` of one epoch's metrics dict, in metric order."""
    return [pair for name, value in values.items() for pair in flat_value(name, value, sep)]


def metric_rows(records):
    """`[(set, flat_name, epoch, value)]`: train rows, then valid rows, by epoch, in metric order."""
    rows = []
    for set_name in SETS:
        for epoch, values in enumerate(records.get("metrics", {}).get(set_name, []), start=1):
            rows += [(set_name, name, epoch, v) for name, v in flat_metrics(values)]
    return rows


def wide_rows(records):
    """`[{"epoch": e, "train_<name>": v, "valid_<name>": v}]`: one dict per epoch (Keras History's shape).

    Names are flattened as `metric_rows` does; an epoch without validation has no `valid_` keys.

    >>> wide_rows({"metrics": {"train": [{"loss": 0.5}], "valid": [{"loss": 0.7}]}})
    [{'epoch': 1, 'train_loss': 0.5, 'valid_loss': 0.7}]
    """
    rows = {}
    for set_name, name, epoch, value in metric_rows(records):
        rows.setdefault(epoch, {"epoch": epoch})[f"{set_name}_{name}"] = value
    return [rows[e] for e in sorted(rows)]


INT32_MAX = 2**31 - 1


def int32_safe(value):
    """`value` with every int beyond +-(2**31 - 1) (not bool) as a float, inside lists/tuples/dicts too.

    Metric values reach R through reticulate, which wraps such ints into wrong R integers.

    >>> int32_safe({"n": 3_000_000_007, "k": [1, True]})
    {'n': 3000000007.0, 'k': [1, True]}
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value) if abs(value) > INT32_MAX else value
    if isinstance(value, dict):
        return {k: int32_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(int32_safe(v) for v in value)
    return value


RECORD_LEAVES = (*PLAIN_LEAVES, torch.Tensor)


def check_records(records, where, budget=MAX_NODES):
    """Records as a file holds them: a dict of plain trees (numbers, strings, tensors), no sharing, within budget.

    `where` starts the error message (``"The records saved in 'model.safetensors'"``).

    >>> check_records({"metrics": {"train": [{"loss": 0.5}], "valid": []}}, "records")
    {'metrics': {'train': [{'loss': 0.5}], 'valid': []}}
    """
    if not isinstance(records, dict):
        raise ValueError(f"{where} must be a dict, got {type(records).__name__}; the file is damaged or crafted.")
    check_plain_tree(records, where, leaves=RECORD_LEAVES, budget=budget)
    metrics = records.get("metrics", {"train": [], "valid": []})
    if not isinstance(metrics, dict) or not all(isinstance(metrics.get(s, []), list) for s in SETS):
        raise ValueError(
            f"{where}['metrics'] must be a dict with 'train' and 'valid' lists; the file is damaged or " "crafted."
        )
    for split in SETS:
        for i, entry in enumerate(metrics.get(split, [])):
            if not isinstance(entry, dict):
                raise ValueError(
                    f"{where}['metrics'][{split!r}][{i}] must be a dict of metric values, got "
                    f"{type(entry).__name__}; the file is damaged or crafted."
                )
    return records


__all__ = [
    "SETS",
    "empty_records",
    "flat_value",
    "flat_metrics",
    "metric_rows",
    "wide_rows",
    "INT32_MAX",
    "int32_safe",
    "RECORD_LEAVES",
    "check_records",
]
