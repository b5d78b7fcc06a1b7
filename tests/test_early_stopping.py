"""EarlyStopping and the shared monitor logic (luz's tests, plus fixes of luz's bugs in mode='zero' and the first epochs)."""

import math

import pytest
import torch
from torch import nn

import pyluz
from helpers import TwoOpt, regression_data
from pyluz.callbacks import EarlyStopping
from pyluz.callbacks.monitor import Monitor, compare, find_quantity


def linear_model():
    return (
        pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=4, out_features=1)
        .set_opt_hparams(lr=0.05)
    )


def data(n=64, seed=0):
    return regression_data(n, seed, features=4, weights=[1.0, -2.0, 0.5, 0.0], noise=0.1)


class Scripted(pyluz.Callback):
    """Logs a scripted metric sequence as `<set>_<name>` at each epoch end (before EarlyStopping runs)."""

    def __init__(self, values, set="valid", name="score"):
        self.values, self.set, self.key = list(values), set, name

    def on_epoch_end(self):
        self.ctx.log("metrics", self.set, {self.key: self.values[self.ctx.epoch - 1]}, index=self.ctx.epoch)


class Recorder(pyluz.Callback):
    def __init__(self):
        self.events = []

    def on_early_stopping(self):
        self.events.append(("early_stopping", self.ctx.epoch))

    def on_fit_end(self):
        self.events.append(("fit_end", self.ctx.epoch))


def n_epochs(fitted):
    return len(fitted.records["metrics"]["train"])


def fit(callbacks, epochs=10, valid=False):
    torch.manual_seed(0)
    x, y = data()
    return linear_model().fit(
        (x, y), epochs=epochs, callbacks=callbacks, verbose=False, valid_data=data(32, 1) if valid else None
    )


# -- luz's tests -----------------------------------------------------------------------------


def test_patience_1_with_huge_min_delta_stops_at_epoch_2():
    cb = EarlyStopping(monitor="train_loss", patience=1, min_delta=1e6)
    fitted = fit([cb])
    assert n_epochs(fitted) == 2
    assert cb.stopped_epoch == 2


def test_patience_2_stops_at_epoch_3():
    fitted = fit([EarlyStopping(monitor="train_loss", patience=2, min_delta=1e6)])
    assert n_epochs(fitted) == 3


def test_min_epochs_are_respected():
    fitted = fit([EarlyStopping(monitor="train_loss", patience=1, min_delta=1e6)], epochs=(5, 25))
    assert n_epochs(fitted) == 5


def test_baseline_makes_the_first_epoch_count():
    # The loss is > 0, so it never improves on a baseline of 0.
    fitted = fit([EarlyStopping(monitor="train_loss", patience=1, baseline=0)])
    assert n_epochs(fitted) == 1


# -- the patience=0 fix and real sequences ----------------------------------------------------


def test_patience_0_keeps_going_while_improving():
    # luz stops at epoch 2 no matter what; we stop at the first epoch without improvement.
    fitted = fit([Scripted([5, 4, 3, 2, 2.5, 1, 0]), EarlyStopping(monitor="valid_score")], epochs=7)
    assert n_epochs(fitted) == 5


def test_patience_0_runs_all_epochs_when_always_improving():
    # A real, decreasing training loss.
    fitted = fit([EarlyStopping(monitor="train_loss")], epochs=6)
    losses = [e["loss"] for e in fitted.records["metrics"]["train"]]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))
    assert n_epochs(fitted) == 6


def test_improves_then_stalls():
    seq = [5.0, 4.0, 3.0, 3.5, 3.2, 2.0, 1.0]
    cb = EarlyStopping(monitor="valid_score", patience=2)
    fitted = fit([Scripted(seq), cb], epochs=7)
    assert n_epochs(fitted) == 5
    assert cb.best == 3.0 and cb.counter == 2


def test_min_delta_counts_small_gains_as_stalls():
    seq = [1.0, 0.97, 0.95, 0.5, 0.49, 0.485, 0.1]
    # Gains of 0.03 and 0.02 are below min_delta=0.05: stop at epoch 3 with patience 2.
    fitted = fit([Scripted(seq), EarlyStopping(monitor="valid_score", patience=2, min_delta=0.05)], epochs=7)
    assert n_epochs(fitted) == 3
    # Without min_delta every epoch improves.
    fitted = fit([Scripted(seq), EarlyStopping(monitor="valid_score", patience=2)], epochs=7)
    assert n_epochs(fitted) == 7


def test_mode_max():
    seq = [0.5, 0.6, 0.55, 0.58, 0.9]
    fitted = fit([Scripted(seq), EarlyStopping(monitor="valid_score", patience=2, mode="max")], epochs=5)
    assert n_epochs(fitted) == 4


def test_mode_zero_compares_the_new_value():
    # |2| < |-3|, |-1| < |2|, then |1.5| > |-1|: stop at epoch 4 (luz never stopped in this mode).
    seq = [-3.0, 2.0, -1.0, 1.5, -0.1]
    fitted = fit([Scripted(seq), EarlyStopping(monitor="valid_score", patience=1, mode="zero")], epochs=5)
    assert n_epochs(fitted) == 4


def test_stopping_runs_on_early_stopping_then_on_fit_end_and_returns():
    rec = Recorder()
    fitted = fit([Scripted([3, 4, 5, 6]), EarlyStopping(monitor="valid_score"), rec], epochs=4)
    assert isinstance(fitted, pyluz.Fitted)
    assert rec.events == [("early_stopping", 2), ("fit_end", 2)]


def test_message_printed_once_when_verbose(capsys):
    torch.manual_seed(0)
    linear_model().fit(
        data(), epochs=5, verbose=True, callbacks=[EarlyStopping(monitor="train_loss", patience=1, min_delta=1e6)]
    )
    err = capsys.readouterr().err
    assert err.count("Early stopping at epoch 2 of 5") == 1


def test_silent_when_not_verbose(capsys):
    fit([EarlyStopping(monitor="train_loss", patience=1, min_delta=1e6)])
    captured = capsys.readouterr()
    assert "Early stopping" not in captured.err + captured.out


def test_instance_reused_in_a_second_fit_starts_fresh():
    cb = EarlyStopping(monitor="valid_score", patience=1)
    assert n_epochs(fit([Scripted([1, 2, 3]), cb], epochs=3)) == 2
    # Without a reset, best=1 from the first fit would stop this one at epoch 1... or 2.
    assert n_epochs(fit([Scripted([9, 8, 7]), cb], epochs=3)) == 3


def test_monitor_names_are_case_insensitive_and_may_hold_underscores():
    fitted = fit([Scripted([5, 4, 6, 3], name="my_score"), EarlyStopping(monitor="Valid_My_Score")], epochs=4)
    assert n_epochs(fitted) == 3  # improves at 2, stalls at 3
    cb = EarlyStopping(monitor="VALID_LOSS", patience=1, min_delta=1e6)
    assert n_epochs(fit([cb], valid=True)) == 2


def test_unknown_monitor_lists_what_is_available():
    with pytest.raises(pyluz.CallbackError) as info:
        fit([EarlyStopping(monitor="valid_lss")], valid=True)
    msg = str(info.value)
    assert "valid_lss" in msg and "'train_loss'" in msg and "'valid_loss'" in msg
    assert isinstance(info.value.__cause__, ValueError)


def test_valid_monitor_without_valid_data_says_so():
    with pytest.raises(pyluz.CallbackError, match="valid_data"):
        fit([EarlyStopping()])


def test_per_optimizer_loss_with_underscored_optimizer_name():
    torch.manual_seed(0)
    model = pyluz.setup(TwoOpt, loss=nn.MSELoss()).set_hparams(n_in=4, names=("gen_a", "disc")).set_opt_hparams(lr=0.05)
    cb = EarlyStopping(monitor="train_loss_GEN_A", patience=1, min_delta=1e6)
    fitted = model.fit(data(), epochs=5, callbacks=[cb], verbose=False)
    assert n_epochs(fitted) == 2
    assert set(fitted.records["metrics"]["train"][0]["loss"]) == {"gen_a", "disc"}
    with pytest.raises(pyluz.CallbackError, match="train_loss_gen_a"):
        model.fit(data(), epochs=2, callbacks=[EarlyStopping(monitor="train_loss")], verbose=False)


# -- monitor unit tests ------------------------------------------------------------------------

RECORDS = {
    "metrics": {
        "train": [{"loss": {"gen_a": 1.0, "disc": 2.0}, "acc": 0.5, "acc_2": 0.7, "my_metric": 3.0}],
        "valid": [{"loss": 0.25}],
    }
}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("train_loss_gen_a", 1.0),
        ("train_loss_disc", 2.0),
        ("TRAIN_ACC", 0.5),
        ("train_acc_2", 0.7),
        ("train_my_metric", 3.0),
        ("valid_loss", 0.25),
        ("Valid_Loss", 0.25),
    ],
)
def test_find_quantity(name, expected):
    assert find_quantity(RECORDS, 1, name) == expected


def test_find_quantity_errors():
    with pytest.raises(ValueError, match="one value per optimizer"):
        find_quantity(RECORDS, 1, "train_loss")
    with pytest.raises(ValueError, match="Available: 'train_loss_gen_a', 'train_loss_disc'"):
        find_quantity(RECORDS, 1, "train_los")
    with pytest.raises(ValueError, match="No 'valid' metrics were recorded at epoch 2"):
        find_quantity(RECORDS, 2, "valid_loss")


def test_compare_modes():
    assert compare(0.9, 1.0, "min") and not compare(1.0, 1.0, "min")
    assert not compare(0.95, 1.0, "min", 0.1) and compare(0.85, 1.0, "min", 0.1)
    assert compare(1.1, 1.0, "max") and not compare(1.05, 1.0, "max", 0.1)
    assert compare(-0.5, 1.0, "zero") and not compare(2.0, 1.0, "zero") and not compare(-0.95, 1.0, "zero", 0.1)
    assert compare(1.0, math.nan, "min") and not compare(math.nan, 1.0, "min")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="avg"), '`mode` must be one of "min", "max", "zero", got \'avg\''),
        (dict(min_delta=-1), "`min_delta` must be a finite number >= 0, got -1"),
        (dict(monitor="loss"), "`monitor` must look like '<set>_<metric>'"),
        (dict(patience=-1), "`patience` must be an integer >= 0, got -1"),
        (dict(patience=1.5), "`patience` must be an integer >= 0, got 1.5"),
        (dict(baseline="low"), "`baseline` must be None or a number, got 'low'"),
    ],
)
def test_argument_validation(kwargs, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        EarlyStopping(**kwargs)


def test_monitor_type_error():
    with pytest.raises(TypeError, match="`monitor` must be a string"):
        Monitor(monitor=3)


def test_weight_and_state_dict():
    cb = EarlyStopping(patience=3.0)
    assert cb.weight == math.inf and cb.patience == 3
    cb.best, cb.counter = 0.5, 2
    other = EarlyStopping()
    other.load_state_dict(cb.state_dict())
    assert (other.best, other.counter) == (0.5, 2)
