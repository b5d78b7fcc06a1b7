"""What fit and evaluate return: `Fitted` and `Evaluation`, with metrics as data frames and luz-style printing."""

import pandas as pd

from .metrics import format_metric_value


def flatten_value(name, value):
    """[(metric_name, float)]: a dict value (several optimizers) gives name_<key> rows, a list name_<i>."""
    if isinstance(value, dict):
        return [(f"{name}_{k}", v) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [(f"{name}_{i}", v) for i, v in enumerate(value)]
    return [(name, value)]


def metrics_frame(records):
    """DataFrame[set, metric, epoch, value]: train rows then valid rows, by epoch, in metric order."""
    rows = []
    for set_name in ("train", "valid"):
        for epoch, values in enumerate(records.get("metrics", {}).get(set_name, []), start=1):
            for name, value in values.items():
                for metric, v in flatten_value(name, value):
                    rows.append((set_name, metric, epoch, v))
    return pd.DataFrame(rows, columns=["set", "metric", "epoch", "value"])


def pretty_seconds(s):
    """A duration the way both front ends print it: `50ms`, `3.2s`, `1m 15s`, `2h 3m 4s`.

    >>> pretty_seconds(75.2)
    '1m 15s'
    """
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m {s % 60:.0f}s"
    return f"{int(s // 3600)}h {int(s % 3600 // 60)}m {s % 60:.0f}s"


def _rule(title, width=60):
    return f"── {title} " + "─" * max(3, width - len(title) - 4)


def _metric_lines(values):
    return [f"{name}: {format_metric_value(v)}" for name, v in values.items()]


class Fitted:
    """A trained model with its records (luz's `luz_module_fitted`).

    Example::

        fitted = model.fit((x, y), epochs=3, valid_data=0.2)
        fitted.get_metrics()            # DataFrame[set, metric, epoch, value]
        preds = fitted.predict(x_new)
        fitted.evaluate((x_test, y_test))
    """

    def __init__(self, model, records, luz_module, opt_names, example_input=None):
        self.model = model
        self.records = records
        self.luz_module = luz_module
        self.opt_names = list(opt_names)
        # A small CPU copy of a model input (what fit() last fed the model, 2 rows); `save()` uses it
        # to export models defined in R as programs that run without R (pyluz.export).
        self.example_input = example_input

    @property
    def hparams(self):
        return self.luz_module.hparams

    @property
    def opt_hparams(self):
        return self.luz_module.opt_hparams

    def predict(self, newdata, stack=True, callbacks=None, accelerator=None, verbose=None, dataloader_options=None,
                **kwargs):
        """Run the model (or its `predict()` method, with `kwargs`) over `newdata` without gradients.

        `stack=True` concatenates batch outputs (tensors, or tuples/dicts of tensors) along dim 0;
        other outputs come back as the list of per-batch results.
        """
        from .runner import run_predict

        if not isinstance(stack, bool):
            raise TypeError(f"`stack` must be True or False, got {stack!r}.")
        return run_predict(self, newdata, stack=stack, callbacks=callbacks, accelerator=accelerator,
                           verbose=verbose, dataloader_options=dataloader_options, **kwargs)

    def evaluate(self, data, metrics=None, callbacks=None, accelerator=None, verbose=None, dataloader_options=None):
        """Loss and metrics over `data` (one validation pass); `metrics` overrides setup's metrics."""
        from .runner import run_evaluate

        return run_evaluate(self, data, metrics=metrics, callbacks=callbacks, accelerator=accelerator,
                            verbose=verbose, dataloader_options=dataloader_options)

    def get_metrics(self):
        """DataFrame[set, metric, epoch, value] of every recorded metric."""
        return metrics_frame(self.records)

    def plot(self):
        """A matplotlib figure: one panel per metric, train and valid curves over epochs."""
        from .plotting import plot_metrics

        return plot_metrics(self.get_metrics())

    def save(self, path):
        """Save weights and metadata (records, hparams) to `path`; read back with `pyluz.load(path)`."""
        from .serialization import save_fitted

        return save_fitted(self, path)

    def __repr__(self):
        profile = self.records.get("profile", {})
        lines = ["A `luz_module_fitted`", _rule("Time")]
        if profile.get("fit"):
            lines.append(f"• Total time: {pretty_seconds(sum(profile['fit']))}")
        if profile.get("train"):
            lines.append(f"• Avg time per training epoch: {pretty_seconds(sum(profile['train']) / len(profile['train']))}")
        lines += ["", _rule("Results"), "Metrics observed in the last epoch.", ""]
        for set_name, title in (("train", "Training"), ("valid", "Validation")):
            entries = self.records.get("metrics", {}).get(set_name) or []
            if entries:
                lines.append(f"ℹ {title}:")
                lines += _metric_lines(entries[-1])
        lines += ["", _rule("Model"), repr(self.model)]
        return "\n".join(lines)


def evaluation_frame(evaluation):
    """DataFrame[metric, value] of an `Evaluation` (the R package reads it)."""
    return evaluation.get_metrics()


class Evaluation:
    """What `evaluate()` returns: `get_metrics()` gives DataFrame[metric, value]."""

    def __init__(self, records):
        self.records = records

    def get_metrics(self):
        rows = []
        for values in self.records.get("metrics", {}).get("valid", [])[:1]:
            for name, value in values.items():
                rows += flatten_value(name, value)
        return pd.DataFrame(rows, columns=["metric", "value"])

    def __getitem__(self, name):
        """The value of one metric, e.g. `evaluation["loss"]`."""
        return self.records["metrics"]["valid"][0][name]

    def __repr__(self):
        lines = ["A `luz_module_evaluation`", _rule("Results")]
        lines += [f"{m}: {format_metric_value(v)}" for m, v in self.get_metrics().itertuples(index=False)]
        return "\n".join(lines)
