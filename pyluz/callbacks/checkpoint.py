"""`ModelCheckpoint` and `KeepBestModel` (luz_callback_model_checkpoint / luz_callback_keep_best_model)."""

import os
import string

import torch

from ..checkpoints import write_checkpoint
from ..distributed import is_main_process, unwrap
from ..checks import check_bool, check_path
from .monitor import MonitorCallback

DEFAULT_FILE_NAME = "epoch-{epoch:02d}-{monitor_name}-{monitor:.3f}.pt"
TEMPLATE_FIELDS = ("epoch", "monitor", "monitor_name")


def _template_fields(template, argument="path"):
    try:
        fields = {
            name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name is not None
        }
    except ValueError as e:
        raise ValueError(f"`{argument}` is not a valid path template ({e}): {template!r}.") from e
    unknown = fields - set(TEMPLATE_FIELDS)
    if unknown or "" in fields:
        bad = sorted(unknown) if unknown else ["{} (positional)"]
        raise ValueError(
            f"`{argument}` may only use the fields {{epoch}}, {{monitor}} and {{monitor_name}} "
            f"(e.g. 'epoch-{{epoch:02d}}-{{monitor:.3f}}.pt'), got {bad} in {template!r}."
        )
    return fields


class ModelCheckpoint(MonitorCallback):
    """Saves a checkpoint (model, optimizers, callbacks, records, RNG) at the end of epochs.

    `path` is a template with the fields `{epoch}`, `{monitor}` (the monitored value) and
    `{monitor_name}`, using Python format specs: `"ckpt/model-{epoch:02d}-{monitor:.3f}.pt"`. A
    path ending in `/` (or an existing directory) gets luz's file name
    `epoch-{epoch:02d}-{monitor_name}-{monitor:.3f}.pt`. Directories are created. With
    `save_best_only=True` a file is written at the first epoch and then only when `monitor` improves
    (`mode` "min"/"max"/"zero", by more than `min_delta`); else every epoch. Files load with
    `pyluz.load_checkpoint(fitted, file)` or `ResumeFromCheckpoint`. The monitored metric is read
    only when the template or `save_best_only` needs it.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> cb = pyluz.callbacks.ModelCheckpoint("checkpoints/", monitor="valid_loss")
    >>> fitted = model.fit((x, y), epochs=2, valid_data=0.25, verbose=False, callbacks=[cb])
    >>> [p.split("-valid")[0] for p in cb.saved]
    ['checkpoints/epoch-01', 'checkpoints/epoch-02']
    """

    def __init__(self, path, monitor="valid_loss", save_best_only=False, mode="min", min_delta=0):
        path = check_path(path)
        if path.endswith(("/", os.sep)) or (os.altsep and path.endswith(os.altsep)) or os.path.isdir(path):
            path = os.path.join(path, DEFAULT_FILE_NAME)
        check_bool(save_best_only, "save_best_only")
        self.path = path
        self.fields = _template_fields(path)
        self.save_best_only = save_best_only
        super().__init__(monitor, mode, min_delta)
        self._check_template()
        self.saved = []

    def _check_template(self):
        try:
            self.path.format(epoch=1, monitor=0.5, monitor_name=self.monitor)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            raise ValueError(
                f"`path` template {self.path!r} can't be filled in ({type(e).__name__}: {e}); "
                "use format specs such as {epoch:02d} and {monitor:.3f}."
            ) from e

    def on_fit_begin(self):
        super().on_fit_begin()
        self.saved = []

    def file_name(self, epoch, value):
        """The file path for `epoch` with monitored `value`."""
        return self.path.format(epoch=epoch, monitor=value, monitor_name=self.monitor)

    def on_epoch_end(self):
        ctx = self.ctx
        needs_value = self.save_best_only or "monitor" in self.fields
        value = self.quantity() if needs_value else float("nan")
        if self.save_best_only:
            save = self.best is None or ctx.epoch == 1 or self.improved(value)
            if save:
                self.best = value
        else:
            save = True
        if save and is_main_process():
            path = self.file_name(ctx.epoch, value)
            write_checkpoint(ctx, path)
            self.saved.append(path)

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state):
        self.best = None if state.get("best") is None else float(state["best"])
        self.mark_restored()

    def __repr__(self):
        return (
            f"ModelCheckpoint(path={self.path!r}, monitor={self.monitor!r}, save_best_only={self.save_best_only}, "
            f"mode={self.mode!r}, min_delta={self.min_delta})"
        )


class KeepBestModel(MonitorCallback):
    """Keeps the weights of the best epoch (by `monitor`) and puts them back in the model at the end of fit.

    The best weights are an in-memory CPU copy of the model's state dict, taken at the end of the
    first epoch and of every epoch that improves `monitor` (`mode` "min"/"max"/"zero", by more than
    `min_delta`). At `on_fit_end` (also after early stopping or Ctrl-C) they are loaded into the
    model; optimizer states and records are left as they are. The copy is part of the callback's
    state, so AutoResume restores it.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> cb = pyluz.callbacks.KeepBestModel(monitor="valid_loss")
    >>> fitted = model.fit((x, y), epochs=3, valid_data=0.25, verbose=False, callbacks=[cb])
    >>> cb.best_epoch in (1, 2, 3)   # the epoch whose weights fitted.model now holds
    True
    """

    def __init__(self, monitor="valid_loss", mode="min", min_delta=0):
        super().__init__(monitor, mode, min_delta)

    def reset(self):
        super().reset()
        self.best_epoch = None
        self.weights = None

    def on_epoch_end(self):
        value = self.quantity()
        if self.best is None or self.improved(value):
            self.best = value
            self.best_epoch = self.ctx.epoch
            self.weights = {k: v.detach().to("cpu", copy=True) for k, v in unwrap(self.ctx.model).state_dict().items()}

    def on_fit_end(self):
        if self.weights is None:
            return
        with torch.no_grad():
            unwrap(self.ctx.model).load_state_dict(self.weights)

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "weights": self.weights}

    def load_state_dict(self, state):
        self.best = None if state.get("best") is None else float(state["best"])
        self.best_epoch = state.get("best_epoch")
        self.weights = state.get("weights")
        self.mark_restored()

    def __repr__(self):
        return f"KeepBestModel(monitor={self.monitor!r}, mode={self.mode!r}, min_delta={self.min_delta})"
