"""The layout of a fit's records, and the one rule that turns metric values into flat names.

`records["metrics"][set][epoch - 1]` is a dict `{name: value}` for `set` in "train"/"valid". A
value is a number, a dict (one number per optimizer: `{"gen": 0.5, "disc": 0.7}`) or a list
(one number per output). Wherever a value must become one column, row or monitor name (metrics
frames, CSV columns, TensorBoard tags, monitor names, prints), a dict value gives `<name>_<key>`
and a list `<name>_<i>` (0-based):

>>> flat_metrics({"loss": {"gen": 0.5, "disc": 0.7}, "acc": 0.9})
[('loss_gen', 0.5), ('loss_disc', 0.7), ('acc', 0.9)]
"""

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


__all__ = ["SETS", "empty_records", "flat_value", "flat_metrics", "metric_rows"]
