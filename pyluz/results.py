"""What fit and evaluate return: `Fitted` and `Evaluation`, with metrics as data frames and luz-style printing."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import torch

from . import distributed
from .callbacks.base import check_callbacks
from .callbacks.trace_forward import TraceForward
from .checks import check_bool
from .metrics import format_metric_value
from .model_file import write_fitted
from .plotting import plot_metrics
from .records import flat_metrics, metric_rows, wide_rows
from .runner import run_evaluate, run_fit, run_predict


def metrics_frame(records):
    """DataFrame[set, metric, epoch, value]: train rows then valid rows, by epoch, in metric order."""
    return pd.DataFrame(metric_rows(records), columns=["set", "metric", "epoch", "value"])


def history_frame(records):
    """DataFrame with one row per epoch: `epoch`, then `train_<metric>` and `valid_<metric>` columns."""
    rows = wide_rows(records)
    columns = ["epoch"]
    for row in rows:  # train columns, then valid columns, in metric order, as the long form
        columns += [c for c in row if c not in columns]
    ordered = (
        ["epoch"] + [c for c in columns if c.startswith("train_")] + [c for c in columns if c.startswith("valid_")]
    )
    return pd.DataFrame(rows, columns=ordered)


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

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> fitted = model.fit((x, y), epochs=3, valid_data=0.2, verbose=False)
    >>> fitted.get_metrics().shape            # DataFrame[set, metric, epoch, value]: 3 train + 3 valid rows
    (6, 4)
    >>> fitted.predict(torch.randn(5, 4), verbose=False).shape
    torch.Size([5, 2])
    >>> fitted.evaluate((x, y), verbose=False).get_metrics().metric.tolist()
    ['loss']
    """

    def __init__(
        self,
        model: torch.nn.Module,
        records: dict,
        luz_module: Any,
        opt_names: list[str],
        example_input: Any = None,
        optimizer_states: dict | None = None,
        capture: TraceForward | None = None,
    ) -> None:
        self.model = model
        self.records = records
        self.luz_module = luz_module
        self.opt_names = list(opt_names)
        # A small CPU copy of a model input (kept by the KeepExampleInput callback, which the R front
        # end adds); `save()` uses it to export models defined in R as programs (pyluz.export).
        self.example_input = example_input
        # The optimizers' final state_dict()s (None for a loaded model), for `fit()` to continue from.
        self.optimizer_states = optimizer_states
        # The fit's TraceForward callback (R's `capture = TRUE`), or None: `predict()`/`evaluate()`
        # trace and replay the forward with it too; `capture.report`/`frame()`/`summary()` say what ran.
        self.capture = capture

    def fit(
        self,
        data: Any,
        epochs: int | tuple[int, int] = 10,
        callbacks: list | None = None,
        valid_data: Any = None,
        accelerator: Any = None,
        verbose: bool | None = None,
        dataloader_options: dict | None = None,
    ) -> Fitted:
        """Train this model further: `epochs` more epochs from its trained weights.

        The optimizers are built again (same setup and `opt_hparams`) and get back their state at
        the end of the previous fit (Adam's moments, SGD's momentum), so ``fit(2)`` then
        ``.fit(1)`` trains as ``fit(3)`` would, up to the data order. What is not carried over:
        callbacks' state (LR schedulers start again, early stopping forgets its best value) and,
        for a model read with `pyluz.load` (give it ``loss=`` and ``optimizer=``), the
        optimizer state (it is not in the file; the optimizers start fresh). The model is trained in place: this `Fitted` sees the new
        weights too. The result's records hold the new epochs only (numbered from 1), as a
        second ``model.fit`` in Keras returns a new History. Arguments as in `pyluz.fit`.

        >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
        >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
        >>> fitted = model.fit((x, y), epochs=2, verbose=False)
        >>> more = fitted.fit((x, y), epochs=1, verbose=False)
        >>> more.model is fitted.model, len(more.history)
        (True, 1)
        """
        if self.luz_module is None:
            raise ValueError("`fit()` needs the setup this model was trained with; this Fitted has none.")
        run = run_fit(
            self.luz_module._replace(module=self.model),
            data,
            epochs=epochs,
            callbacks=callbacks,
            valid_data=valid_data,
            accelerator=accelerator,
            verbose=verbose,
            dataloader_options=dataloader_options,
            optimizer_states=self.optimizer_states,
        )
        return Fitted(
            model=run.model,
            records=run.records,
            luz_module=self.luz_module,
            opt_names=run.opt_names,
            example_input=self.example_input,
            optimizer_states=run.optimizer_states,
            capture=run.capture,
        )

    @property
    def hparams(self):
        return self.luz_module.hparams

    @property
    def opt_hparams(self):
        return self.luz_module.opt_hparams

    def predict(
        self,
        newdata: Any,
        stack: bool = True,
        callbacks: list | None = None,
        accelerator: Any = None,
        verbose: bool | None = None,
        dataloader_options: dict | None = None,
        capture: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the model (or its `predict()` method, with `kwargs`) over `newdata` without gradients.

        `predict` takes inputs only. In-memory `newdata` is all input: one array, or for a model
        with several inputs a tuple/list or dict of arrays (nested as the model takes them), which
        the model gets whole, batch by batch (``predict((num, cat))`` calls
        ``model((num_batch, cat_batch))``; a tuple of one array is that array). A Dataset or
        DataLoader gives batches laid out as in `fit` (``(x, y, ...)``, ``{"x": ..., "y": ...}``):
        the input is ``x``, the rest is ignored; to predict a multi-input model from a loader,
        yield ``((a, b),)`` or ``{"x": (a, b)}``.

        `stack=True` concatenates batch outputs (tensors, or tuples/dicts of tensors) along dim 0;
        other outputs come back as the list of per-batch results.

        `capture`: whether the forward is traced and replayed (see `TraceForward`); None (the
        default) traces when the fit did (``self.capture``, reusing its programs), False runs the
        forward eagerly, True traces (with a new ``TraceForward(only_r=False)`` kept in
        ``self.capture`` when the fit did not trace). The outputs are the same bit for bit.

        >>> class TwoInputs(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.a, self.b = nn.Linear(2, 1), nn.Linear(3, 1)
        ...     def forward(self, inputs):
        ...         a, b = inputs
        ...         return self.a(a) + self.b(b)
        >>> a, b, y = torch.randn(8, 2), torch.randn(8, 3), torch.randn(8, 1)
        >>> model = pyluz.setup(TwoInputs, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
        >>> fitted = model.fit(((a, b), y), epochs=1, verbose=False, dataloader_options={"batch_size": 4})
        >>> fitted.predict((a, b), verbose=False).shape
        torch.Size([8, 1])
        """
        check_bool(stack, "stack")
        return run_predict(
            self,
            newdata,
            stack=stack,
            callbacks=self._with_capture(callbacks, capture),
            accelerator=accelerator,
            verbose=verbose,
            dataloader_options=dataloader_options,
            **kwargs,
        )

    def evaluate(
        self,
        data: Any,
        metrics: Any = None,
        callbacks: list | None = None,
        accelerator: Any = None,
        verbose: bool | None = None,
        dataloader_options: dict | None = None,
        capture: bool | None = None,
    ) -> Evaluation:
        """Loss and metrics over `data` (one validation pass); `metrics` overrides setup's metrics.

        `capture` as in `predict()`: None traces the forward when the fit did.
        """
        records = run_evaluate(
            self,
            data,
            metrics=metrics,
            callbacks=self._with_capture(callbacks, capture),
            accelerator=accelerator,
            verbose=verbose,
            dataloader_options=dataloader_options,
        )
        return Evaluation(records)

    def _with_capture(self, callbacks, capture):
        """`callbacks` with the TraceForward that `capture` asks for (see `predict()`)."""
        if capture is None:
            trace = self.capture
        elif check_bool(capture, "capture"):
            if self.capture is None:
                self.capture = TraceForward(only_r=False)
            trace = self.capture
        else:
            trace = None
        callbacks = check_callbacks(callbacks)
        if trace is not None and trace not in callbacks:
            callbacks.append(trace)
        return callbacks

    def capture_frame(self) -> pd.DataFrame | None:
        """What tracing did (see `TraceForward`), one row per key, or None without tracing.

        Columns: `key` (mode, grad mode, input shapes), `status` (``traced``: a program is held
        and the key's calls replay it; ``eager``: it runs the forward, `reason` says why;
        ``dropped``: its program was dropped, `reason` says why, the next call traces again),
        `reason`, `traces`, `drops`, `replays`, `eager_calls` (over the fit, predicts and evaluates).
        """
        return None if self.capture is None else pd.DataFrame(self.capture.frame())

    def get_metrics(self, wide: bool = False) -> pd.DataFrame:
        """DataFrame[set, metric, epoch, value] of every recorded metric.

        `wide=True` gives one row per epoch instead (the shape of Keras's ``History``): columns
        `epoch`, `train_loss`, `train_<metric>`..., `valid_loss`, `valid_<metric>`... (NaN where
        an epoch has no validation). Multi-valued metrics flatten as in the long form
        (``loss_gen``, ``acc_0``). Same as the `history` property.

        >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
        >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
        >>> model.fit((x, y), epochs=2, valid_data=0.2, verbose=False).get_metrics(wide=True).columns.tolist()
        ['epoch', 'train_loss', 'valid_loss']
        """
        check_bool(wide, "wide")
        return history_frame(self.records) if wide else metrics_frame(self.records)

    @property
    def history(self) -> pd.DataFrame:
        """`get_metrics(wide=True)`: one row per epoch, `train_<metric>` and `valid_<metric>` columns."""
        return history_frame(self.records)

    def plot(self) -> Any:
        """A matplotlib figure: one panel per metric, train and valid curves over epochs."""
        return plot_metrics(self.get_metrics())

    def save(self, path: str | os.PathLike, front_end: dict[str, str] | None = None, verbose: bool = False) -> str:
        """Save weights and metadata (records, hparams) to `path`, one file; read back with `pyluz.load(path)`.

        A model defined in R is also exported, silently, as a program stored in the same file (see
        `pyluz.export`), from `example_input`; `verbose=True` prints whether that worked and, if
        not, why (also in the file's metadata: `"program_error"`). `front_end`: strings a front end
        keeps in the file for itself (see `pyluz.model_file.write_fitted`). Returns `path`.

        Under DDP only the main process (rank 0) writes, as checkpoints do: every rank holds the
        same model, and ranks writing one file would race. The others return `path` at once.
        """
        if not distributed.is_main_process():
            return path
        module = self.luz_module.module if self.luz_module is not None else self.model
        return write_fitted(
            path,
            self.model,
            module,
            self.hparams,
            self.opt_hparams,
            self.opt_names,
            self.records,
            example_input=self.example_input,
            front_end=front_end,
            verbose=check_bool(verbose, "verbose"),
        )

    def __repr__(self) -> str:
        profile = self.records.get("profile", {})
        lines = [f"{type(self).__name__}: a trained {_model_summary(self.model)}", _rule("Time")]
        if profile.get("fit"):
            lines.append(f"• Total time: {pretty_seconds(sum(profile['fit']))}")
        if profile.get("train"):
            lines.append(
                f"• Avg time per training epoch: {pretty_seconds(sum(profile['train']) / len(profile['train']))}"
            )
        lines += ["", _rule("Results"), "Metrics observed in the last epoch.", ""]
        for set_name, title in (("train", "Training"), ("valid", "Validation")):
            entries = self.records.get("metrics", {}).get(set_name) or []
            if entries:
                lines.append(f"ℹ {title}:")
                lines += _metric_lines(entries[-1])
        lines += ["", _rule("Model"), repr(self.model)]
        return "\n".join(lines)


def _model_summary(model):
    n = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = f" ({trainable:,} trainable)" if trainable != n else ""
    return f"{type(model).__name__} with {n:,} parameters{frozen}"


def evaluation_frame(evaluation):
    """DataFrame[metric, value] of an `Evaluation` (the R package reads it)."""
    return evaluation.get_metrics()


class Evaluation:
    """What `evaluate()` returns: `get_metrics()` gives DataFrame[metric, value]."""

    def __init__(self, records: dict) -> None:
        self.records = records

    def get_metrics(self) -> pd.DataFrame:
        """DataFrame[metric, value] of the evaluation."""
        rows = []
        for values in self.records.get("metrics", {}).get("valid", [])[:1]:
            rows += flat_metrics(values)
        return pd.DataFrame(rows, columns=["metric", "value"])

    def __getitem__(self, name: str) -> Any:
        """The value of one metric, e.g. `evaluation["loss"]`."""
        return self.records["metrics"]["valid"][0][name]

    def __repr__(self):
        lines = [type(self).__name__, _rule("Results")]
        lines += [f"{m}: {format_metric_value(v)}" for m, v in self.get_metrics().itertuples(index=False)]
        return "\n".join(lines)
