"""`Context` (luz's `ctx`): everything the loop, callbacks and the model share during fit/predict."""

from __future__ import annotations

from typing import Any

from .events import HookTable
from .nested import PositionalDict
from .records import empty_records, int32_safe


def split_batch(batch):
    """Return (input, target) of a batch: `(x, y, ...)`, `{"x", "y"}`/`{"input", "target"}`, or `x`.

    A `PositionalDict` (an R named list) splits by position, as luz does in R.
    """
    if isinstance(batch, PositionalDict):
        batch = list(batch.values())
    if isinstance(batch, (tuple, list)):
        if len(batch) >= 2:
            return batch[0], batch[1]
        return (batch[0] if batch else None), None
    if isinstance(batch, dict):
        for x_key, y_key in (("x", "y"), ("input", "target")):
            if x_key in batch:
                return batch[x_key], batch.get(y_key)
        return batch, None
    return batch, None


class Context:
    """The state shared by the loop, callbacks, metrics and the model (`self.ctx`).

    Attributes follow luz's ctx: `model`, `optimizers` (dict name -> optimizer), `epoch`, `iter`
    (1-based counts), `training`, `batch`, `input`, `target`, `pred`, `loss` (dict name -> detached
    loss), `loss_grad`, `records`, `buffers` (free-form dict for callbacks), ...

    Example:

    >>> class LogLR(pyluz.Callback):
    ...     def on_epoch_end(self):
    ...         lr = self.ctx.opt.param_groups[0]["lr"]
    ...         self.ctx.log("lr", "train", lr)
    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> model.fit((x, y), epochs=2, verbose=False, callbacks=[LogLR()]).records["lr"]
    {'train': [0.001, 0.001]}
    """

    def __init__(
        self,
        *,
        model,
        accelerator,
        callbacks,
        verbose,
        training,
        optimizers=None,
        loss_fn=None,
        backward=None,
        hparams=None,
        opt_hparams=None,
    ):
        self.model = model
        self.accelerator = accelerator
        self.optimizers = optimizers if optimizers is not None else {}
        self.verbose = verbose
        self.training = training
        self.loss_fn = loss_fn
        self.backward = backward
        self.hparams = dict(hparams or {})
        self.opt_hparams = dict(opt_hparams or {})
        self.data = self.train_data = self.valid_data = None
        self.min_epochs, self.max_epochs = 0, 1
        self.epoch = 0
        self.iter = 0
        self.step = None
        self.step_opt = default_step_opt
        self.pred = None
        self.loss = {}
        self.loss_grad = None
        self.metrics = {"train": [], "valid": []}
        self.handlers = {}
        self.buffers = {}
        self._batch = self.input = self.target = None
        self._opt = self._opt_name = None
        self._records = empty_records()
        # (what, set, first 0-based index changed) per `log()`: front ends convert only what changed
        self.records_edits = []
        self.callbacks = callbacks
        self._hooks = HookTable(callbacks)
        for cb in callbacks:
            cb.set_ctx(self)

    # -- derived fields ---------------------------------------------------------------------
    @property
    def device(self):
        return self.accelerator.device

    @property
    def records(self):
        """What was logged: `records["metrics"]["train"][epoch - 1] == {"loss": ..., ...}`."""
        return self._records

    @property
    def batch(self):
        return self._batch

    @batch.setter
    def batch(self, value):
        self._batch = value
        self.input, self.target = split_batch(value)

    @property
    def opt(self):
        """The optimizer being stepped; the only one when there is one."""
        if self._opt is None and len(self.optimizers) == 1:
            return next(iter(self.optimizers.values()))
        if self._opt is None:
            raise AttributeError("`ctx.opt` is not set: the model has several optimizers and none is active.")
        return self._opt

    @opt.setter
    def opt(self, value):
        self._opt = value

    @property
    def opt_name(self):
        if self._opt_name is None and len(self.optimizers) == 1:
            return next(iter(self.optimizers))
        if self._opt_name is None:
            raise AttributeError("`ctx.opt_name` is not set: the model has several optimizers and none is active.")
        return self._opt_name

    @opt_name.setter
    def opt_name(self, value):
        self._opt_name = value

    # -- callbacks --------------------------------------------------------------------------
    def call_callbacks(self, name: str) -> None:
        """Run every callback that defines breakpoint `name` (any `on_*` name, built-in or custom)."""
        self._hooks.call(name, self)

    # -- records ----------------------------------------------------------------------------
    def log(self, what: str, set: str, value: Any, index: int | None = None) -> None:
        """Record `value` under `records[what][set]`.

        With `index` (1-based) a dict value is merged into that entry, anything else replaces it;
        without it the value is appended.
        """
        if not isinstance(what, str) or not isinstance(set, str):
            raise TypeError(
                f"ctx.log: `what` and `set` must be strings (e.g. 'lr', 'train'), " f"got {what!r} and {set!r}."
            )
        if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 1):
            raise ValueError(f"ctx.log: `index` must be None or a 1-based int, got {index!r}.")
        entries = self._records.setdefault(what, {}).setdefault(set, [])
        self.records_edits.append((what, set, len(entries) if index is None else min(len(entries), index - 1)))
        if index is None:
            entries.append(value)
            return
        while len(entries) < index:
            entries.append({})
        current = entries[index - 1]
        if isinstance(current, dict) and isinstance(value, dict):
            current.update(value)
        else:
            entries[index - 1] = value

    def log_metric(self, name: str, value: Any) -> None:
        """Record metric `name` for the current set (train while training, else valid) and epoch.

        Integers outside R's 32-bit integer range are recorded as floats (`records.int32_safe`):
        reticulate would wrap them into wrong R integers (3000000007 -> -1294967289) when the
        records reach R.
        """
        self.log("metrics", "train" if self.training else "valid", {name: int32_safe(value)}, index=self.epoch)

    def get_log(self, what: str, set: str, index: int | None = None) -> Any:
        """The entry at `index` (1-based; default: the last), or None."""
        entries = self._records.get(what, {}).get(set, [])
        if not entries:
            return None
        if index is None:
            return entries[-1]
        return entries[index - 1] if 1 <= index <= len(entries) else None

    def get_metrics(self, set: str, epoch: int | None = None) -> dict:
        """Dict of the metrics of `set` ("train"/"valid") at `epoch` (default: the last one)."""
        return self.get_log("metrics", set, epoch) or {}

    def get_metric(self, name: str, set: str, epoch: int | None = None) -> Any:
        """One metric value, or None when it was not recorded."""
        return self.get_metrics(set, epoch).get(name)

    def set_records(self, records: dict) -> None:
        """Replace all records (used when restoring checkpoints)."""
        self._records = records
        self.records_edits = []

    # -- end of life ------------------------------------------------------------------------
    def clean(self):
        """Drop everything but records, hparams and the model, so nothing keeps data alive."""
        self.optimizers = {}
        self.data = self.train_data = self.valid_data = None
        self._batch = self.input = self.target = self.pred = self.loss_grad = None
        self.loss = {}
        self._opt = self._opt_name = None
        self.metrics = {"train": [], "valid": []}
        self.handlers = {}
        self.buffers = {}
        self.step = self.step_opt = self.loss_fn = self.backward = None
        for cb in self.callbacks:
            cb.ctx = None
        self.callbacks = []
        self._hooks = HookTable([])


def default_step_opt(opt):
    opt.step()
