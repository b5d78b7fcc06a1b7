"""Loggers: `CSVLogger` (luz_callback_csv_logger) and `TensorBoard` (luz_callback_tfevents)."""

import csv
import numbers
import os


from ..checks import check_path, fail
from ..distributed import is_main_process, unwrap
from ..records import flat_metrics
from .base import Callback


class CSVLogger(Callback):
    """Writes one CSV row per epoch and set: columns `epoch, set, <metrics...>` (luz_callback_csv_logger).

    The file is (re)written for each fit; rows come from `ctx.records`, so a run resumed with
    `AutoResume` gets the restored epochs too. Train and valid may have different metrics: the
    header is the union of the columns and missing values are empty cells. A per-optimizer loss
    gives `loss_<opt>` columns. Values are written with full precision.

    Example:

    >>> import pandas
    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> fitted = model.fit((x, y), epochs=2, valid_data=0.2, verbose=False,
    ...                    callbacks=[pyluz.callbacks.CSVLogger("log.csv")])
    >>> pandas.read_csv("log.csv")[["epoch", "set"]].values.tolist()
    [[1, 'train'], [1, 'valid'], [2, 'train'], [2, 'valid']]
    """

    def __init__(self, path):
        self.path = check_path(path, "path", owner="CSVLogger")
        self.columns = None
        self.written = 0  # epochs already in the file

    def on_fit_begin(self):
        self.columns = None
        self.written = 0

    def _rows(self, first, last):
        records = self.ctx.records.get("metrics", {})
        rows = []
        for epoch in range(first, last + 1):
            for set_name in ("train", "valid"):
                entries = records.get(set_name, [])
                if epoch <= len(entries) and entries[epoch - 1]:
                    row = {"epoch": epoch, "set": set_name}
                    row.update(flat_metrics(entries[epoch - 1]))
                    rows.append(row)
        return rows

    @staticmethod
    def _union(columns, rows):
        columns = list(columns or ["epoch", "set"])
        for row in rows:
            columns += [k for k in row if k not in columns]
        return columns

    def on_epoch_end(self):
        if not is_main_process():
            return
        epoch = self.ctx.epoch
        new_rows = self._rows(self.written + 1, epoch)
        columns = self._union(self.columns, new_rows)
        if self.columns is None or columns != self.columns:
            # First write, or a metric appeared: write the whole file with the wider header.
            rows, mode, header = self._rows(1, epoch), "w", True
        else:
            rows, mode, header = new_rows, "a", False
        self.columns = columns
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(self.path, mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            if header:
                writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
        self.written = epoch


def _cell(value):
    if isinstance(value, float):
        return repr(value)
    return value


class TensorBoard(Callback):
    """Logs epoch metrics (and optionally parameter histograms) for TensorBoard (luz_callback_tfevents).

    Scalars are `train/<metric>` and `valid/<metric>` with step = epoch; a per-optimizer loss is
    `train/loss/<opt>`. `histograms=True` logs every parameter under `weights/<name>` once per epoch
    (at the end of training); a list of parameter names logs only those. Files go to `logdir`
    (created if needed); view them with `tensorboard --logdir logs`.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> fitted = model.fit((x, y), epochs=2, valid_data=0.2, verbose=False,
    ...                    callbacks=[pyluz.callbacks.TensorBoard("runs/exp1")])
    """

    def __init__(self, logdir="logs", histograms=False):
        self.logdir = check_path(logdir, "logdir", owner="TensorBoard")
        if isinstance(histograms, str):
            histograms = [histograms]
        if not (
            isinstance(histograms, bool)
            or isinstance(histograms, (list, tuple))
            and all(isinstance(h, str) for h in histograms)
        ):
            fail("histograms", "True, False or a list of parameter names", histograms, "TensorBoard", TypeError)
        self.histograms = list(histograms) if isinstance(histograms, (list, tuple)) else histograms
        self.writer = None

    def _open(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # tensorboard is an optional dependency
            raise ImportError("TensorBoard needs the `tensorboard` package: pip install tensorboard") from e
        self.close()
        os.makedirs(self.logdir, exist_ok=True)
        self.writer = SummaryWriter(log_dir=self.logdir)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def on_fit_begin(self):
        if not is_main_process():
            return
        if isinstance(self.histograms, list):
            names = dict(unwrap(self.ctx.model).named_parameters())
            missing = [h for h in self.histograms if h not in names]
            if missing:
                raise ValueError(
                    f"TensorBoard: `histograms` names unknown parameters {missing}; the model has " f"{list(names)}."
                )
        self._open()

    def _log(self, set_name):
        if self.writer is None:
            return
        epoch = self.ctx.epoch
        for name, value in flat_metrics(self.ctx.get_metrics(set_name, epoch), sep="/"):
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                self.writer.add_scalar(f"{set_name}/{name}", float(value), global_step=epoch)

    def on_train_end(self):
        self._log("train")
        if self.writer is not None and self.histograms:
            wanted = None if self.histograms is True else set(self.histograms)
            for name, p in unwrap(self.ctx.model).named_parameters():
                if wanted is None or name in wanted:
                    self.writer.add_histogram(f"weights/{name}", p.detach().float().cpu(), global_step=self.ctx.epoch)

    def on_valid_end(self):
        self._log("valid")

    def on_epoch_end(self):
        if self.writer is not None:
            self.writer.flush()

    def on_fit_end(self):
        self.close()
