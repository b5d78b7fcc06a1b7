"""One family of argument checks, one message shape: ``[Owner: ]`argument` must be <expected>, got <given>.``"""

import pytest
import torch

import pyluz
from pyluz import checks
from pyluz.data import TensorBatches
from pyluz.distributed import ShardedTensorBatches
from pyluz.events import check_event
from pyluz.records import flat_metrics, metric_rows
from pyluz.runner import check_epochs


@pytest.mark.parametrize(
    "call, error, text",
    [
        (lambda: checks.check_bool("yes", "stack"), TypeError, "`stack` must be True or False, got 'yes'."),
        (
            lambda: checks.check_bool(1, "cpu", owner="Accelerator"),
            TypeError,
            "Accelerator: `cpu` must be True or False, got 1.",
        ),
        (
            lambda: checks.check_real(2.0, "threshold", "BinaryAccuracy", lo=0, hi=1),
            ValueError,
            "BinaryAccuracy: `threshold` must be a number in [0, 1], got 2.0.",
        ),
        (
            lambda: checks.check_positive(-1, "start_lr", "lr_finder"),
            ValueError,
            "lr_finder: `start_lr` must be a positive finite number, got -1.",
        ),
        (lambda: checks.check_int(1.5, "steps", min_value=1), ValueError, "`steps` must be an integer >= 1, got 1.5."),
        (lambda: checks.check_int(True, "steps"), ValueError, "`steps` must be an integer, got True."),
        (
            lambda: checks.check_choice("mean", "average", ["micro", "macro"]),
            ValueError,
            '`average` must be one of "micro", "macro", got \'mean\'.',
        ),
        (lambda: checks.check_path(3), TypeError, "`path` must be a file path (str or os.PathLike), got int."),
        (lambda: checks.check_path(""), ValueError, "`path` must be a non-empty file path, got ''."),
        (
            lambda: checks.check_type([], "accelerator", pyluz.Accelerator, "a pyluz.Accelerator"),
            TypeError,
            "`accelerator` must be a pyluz.Accelerator, got list.",
        ),
    ],
)
def test_one_message_shape(call, error, text):
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == text


def test_checks_return_the_normalised_value():
    assert checks.check_int(200.0, "n") == 200 and isinstance(checks.check_int(200.0, "n"), int)
    assert checks.check_real(1, "x") == 1.0 and isinstance(checks.check_real(1, "x"), float)
    assert checks.check_optional_bool(None, "verbose") is None
    assert checks.check_path("~/x.pt").endswith("x.pt") and "~" not in checks.check_path("~/x.pt")


def test_public_functions_speak_the_same_shape(xy):
    with pytest.raises(TypeError, match=r"^`stack` must be True or False, got 'no'\.$"):
        pyluz.Fitted(torch.nn.Linear(4, 2), {}, None, ["opt"]).predict(xy[0], stack="no")
    with pytest.raises(TypeError, match=r"^lr_finder: `verbose` must be True, False or None, got 'loud'\.$"):
        pyluz.lr_finder(
            pyluz.setup(torch.nn.Linear, loss=torch.nn.MSELoss(), optimizer=torch.optim.SGD), xy, verbose="loud"
        )
    with pytest.raises(TypeError, match=r"^CSVLogger: `path` must be a file path"):
        pyluz.callbacks.CSVLogger(3)


@pytest.mark.parametrize(
    "call, error, text",
    [
        (
            lambda: check_epochs("3"),
            ValueError,
            "`epochs` must be an int or a (min_epochs, max_epochs) pair of ints, got '3'.",
        ),
        (
            lambda: check_epochs((4, 2)),
            ValueError,
            "`epochs` must be an int >= 1 or a pair with 0 <= min_epochs <= max_epochs, max_epochs >= 1, got (4, 2).",
        ),
        (
            lambda: check_event("on_epoch_ned"),
            ValueError,
            "`call_on` must be a breakpoint name such as 'on_epoch_end', got 'on_epoch_ned'. Did you mean 'on_epoch_end'?",
        ),
        (lambda: pyluz.Accelerator(strategy="dp"), ValueError, "`strategy` must be one of None, \"ddp\", got 'dp'."),
        (
            lambda: pyluz.callbacks.EarlyStopping(baseline=float("nan")),
            ValueError,
            "`baseline` must be None or a number, got nan.",
        ),
        (
            lambda: ShardedTensorBatches(TensorBatches([torch.arange(4)], 2), rank=2, world_size=2),
            ValueError,
            "`rank` must be an integer in [0, 1], got 2.",
        ),
        (
            lambda: pyluz.callbacks.TensorBoard(histograms=3),
            TypeError,
            "TensorBoard: `histograms` must be True, False or a list of parameter names, got 3.",
        ),
        (
            lambda: pyluz.callbacks.mixup(torch.arange(4), torch.arange(4), torch.ones(4)),
            TypeError,
            "mixup: `x` must be a floating point tensor, got dtype torch.int64.",
        ),
    ],
)
def test_engine_arguments_speak_the_same_shape(call, error, text):
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == text


def test_early_stopping_takes_an_infinite_baseline():
    assert pyluz.callbacks.EarlyStopping(baseline=float("-inf")).baseline == float("-inf")


def test_records_flatten_one_way():
    values = {"loss": {"gen": 0.5, "disc": 0.7}, "acc": 0.9, "auc": [0.1, 0.2]}
    assert flat_metrics(values) == [("loss_gen", 0.5), ("loss_disc", 0.7), ("acc", 0.9), ("auc_0", 0.1), ("auc_1", 0.2)]
    records = {"metrics": {"train": [values], "valid": [{"loss": 1.0}]}}
    assert metric_rows(records)[-1] == ("valid", "loss", 1, 1.0)
    frame = pyluz.Fitted(torch.nn.Linear(1, 1), records, None, ["opt"]).get_metrics()
    assert list(frame.metric) == ["loss_gen", "loss_disc", "acc", "auc_0", "auc_1", "loss"]
