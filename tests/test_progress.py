"""Progress output: luz's layout in terminals (tqdm), one line per epoch in logs, renderer hooks."""

import io
import re

import torch
from torch import nn

import pyluz
from pyluz.callbacks import progress
from helpers import Net
from pyluz.metrics import format_metric_value as fmt


def fit(xy, **kw):
    return (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, metrics=[pyluz.metrics.Accuracy()])
        .set_opt_hparams(lr=0.1)
        .fit(xy, **kw)
    )


def test_log_mode_prints_one_line_per_epoch(xy, capsys):
    f = fit(xy, epochs=2, valid_data=xy, verbose=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    m = f.records["metrics"]
    assert lines[1] == (
        f"Epoch 2/2 - Train metrics: Loss: {fmt(m['train'][1]['loss'])} - Acc: {fmt(m['train'][1]['acc'])}"
        f" - Valid metrics: Loss: {fmt(m['valid'][1]['loss'])} - Acc: {fmt(m['valid'][1]['acc'])}"
    )


def test_verbose_false_prints_nothing(xy, capsys):
    fit(xy, epochs=1, verbose=False)
    assert capsys.readouterr().err == ""


def test_terminal_mode_uses_luz_layout(xy, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(progress, "renderer_factory", lambda: progress.TqdmRenderer(file=out))
    fit(xy, epochs=2, valid_data=xy, verbose=True)
    text = out.getvalue()
    assert "Epoch 1/2\n" in text and "Epoch 2/2\n" in text
    assert re.search(r"Train metrics: Loss: \d\.\d{4} - Acc: \d\.\d{4}\n", text)
    assert re.search(r"Valid metrics: Loss: \d\.\d{4} - Acc: \d\.\d{4}\n", text)
    assert re.search(r"3/3 \[", text)  # a bar with the batch count


class Spy:
    """A renderer that records calls (what a front end such as R implements)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):  # test double only
        return lambda *a: self.calls.append((name, *a))


def test_renderer_protocol_and_refresh_interval(xy):
    spy = Spy()
    cb = progress.Progress(renderer=spy, interval=3600)  # refreshes at the first batch, then not within the hour
    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    model.fit(xy, epochs=1, verbose=True, callbacks=[cb])
    names = [c[0] for c in spy.calls]
    assert spy.calls[:2] == [("epoch_begin", 1, 1), ("bar_begin", "train", 3)]
    updates = [c for c in spy.calls if c[0] == "bar_update"]
    assert [u[1] for u in updates] == [1, 3]  # time-based refresh plus the final state, not per step
    assert names[-3:] == ["bar_end", "epoch_metrics", "epoch_end"]


def test_early_stopping_message(xy, capsys):
    class Stop(pyluz.Callback):
        def on_epoch_end(self):
            raise pyluz.StopTraining()

    fit(xy, epochs=5, verbose=True, callbacks=[Stop()])
    assert "Early stopping at epoch 1 of 5" in capsys.readouterr().err


def test_progress_validates_its_arguments():
    import pytest

    with pytest.raises(ValueError, match="`interval` must be a number of seconds >= 0"):
        progress.Progress(interval=-1)
    with pytest.raises(ValueError, match="`interval`"):
        progress.Progress(interval="fast")
    with pytest.raises(TypeError, match="`renderer` must have the methods .*lacks epoch_begin"):
        progress.Progress(renderer=object())
    assert progress.Progress(renderer=progress.LineRenderer(), interval=0).interval == 0


def test_epoch_line_matches_metrics_by_key_when_callbacks_log_other_values(xy, capsys):
    class LogLR(pyluz.Callback):
        def on_epoch_begin(self):  # logged before the loss: first in the epoch's train record
            self.ctx.log_metric("lr", 0.1)

    f = fit(xy, epochs=1, verbose=True, callbacks=[LogLR()])
    train = f.records["metrics"]["train"][0]
    assert list(train) == ["lr", "loss", "acc"]
    line = capsys.readouterr().err.strip()
    assert line == f"Epoch 1/1 - Train metrics: Loss: {fmt(train['loss'])} - Acc: {fmt(train['acc'])}"


def test_a_stop_or_ctrl_c_mid_phase_closes_the_open_bar_first(xy):
    class StopAtFirstBatch(pyluz.Callback):
        def on_train_batch_end(self):
            raise pyluz.StopTraining()

    class CtrlCInValidation(pyluz.Callback):
        def on_valid_batch_end(self):
            raise KeyboardInterrupt

    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    spy = Spy()
    model.fit(xy, epochs=3, verbose=True, callbacks=[progress.Progress(renderer=spy), StopAtFirstBatch()])
    names = [c[0] for c in spy.calls]
    assert names[names.index("bar_begin") :] == ["bar_begin", "bar_update", "bar_end", "message"]
    spy = Spy()
    model.fit(
        xy, epochs=3, verbose=True, valid_data=xy, callbacks=[progress.Progress(renderer=spy), CtrlCInValidation()]
    )
    begins = [c[1] for c in spy.calls if c[0] == "bar_begin"]
    assert begins == ["train", "valid"] and [c[0] for c in spy.calls][-1] == "bar_end"
