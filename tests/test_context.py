"""Context: records API, optimizer resolution, batch splitting, attributes, cleanup."""

import pytest
import torch
from torch import nn

import pyluz
from pyluz.context import split_batch
from pyluz.nested import PositionalDict, to_device
from helpers import Net

CTX_ATTRIBUTES = [
    "verbose",
    "accelerator",
    "model",
    "optimizers",
    "data",
    "train_data",
    "valid_data",
    "min_epochs",
    "max_epochs",
    "epoch",
    "iter",
    "training",
    "callbacks",
    "step",
    "call_callbacks",
    "batch",
    "input",
    "target",
    "pred",
    "loss",
    "loss_grad",
    "loss_fn",
    "opt",
    "opt_name",
    "metrics",
    "records",
    "handlers",
    "step_opt",
    "device",
    "hparams",
    "opt_hparams",
    "buffers",
    "log",
    "log_metric",
    "get_log",
    "get_metrics",
    "get_metric",
]


def test_ctx_has_every_luz_attribute(xy):
    seen = {}

    class Look(pyluz.Callback):
        def on_train_batch_end(self):
            if self.ctx.iter == 1:
                seen.update({a: hasattr(self.ctx, a) for a in CTX_ATTRIBUTES})
                seen["opt_name"] = self.ctx.opt_name
                seen["device"] = str(self.ctx.device)
                seen["loss_keys"] = list(self.ctx.loss)
                seen["metrics"] = [m.name for m in self.ctx.metrics["train"]]

    pyluz.setup(
        Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, metrics=[pyluz.metrics.Accuracy()]
    ).set_opt_hparams(lr=0.1).fit(xy, epochs=1, verbose=False, callbacks=[Look()])
    assert all(seen[a] for a in CTX_ATTRIBUTES)
    assert seen["opt_name"] == "opt" and seen["device"] == "cpu" and seen["loss_keys"] == ["opt"]
    assert seen["metrics"] == ["Loss", "Acc"]


def test_log_and_get(xy):
    class Logger(pyluz.Callback):
        def on_epoch_end(self):
            self.ctx.log("custom", "train", self.ctx.epoch * 10)
            self.ctx.log_metric("double_loss", 2 * self.ctx.get_metric("loss", "train"))

    f = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=2, verbose=False, callbacks=[Logger()])
    )
    assert f.records["custom"]["train"] == [10, 20]
    for e in range(2):
        m = f.records["metrics"]["train"][e]
        assert m["double_loss"] == pytest.approx(2 * m["loss"])
    assert len(f.records["profile"]["epoch"]) == 2 and len(f.records["profile"]["fit"]) == 1


def test_records_api_on_a_bare_context():
    ctx = pyluz.Context(model=None, accelerator=pyluz.Accelerator(cpu=True), callbacks=[], verbose=False, training=True)
    ctx.epoch = 2
    ctx.log_metric("loss", 0.5)
    assert ctx.records["metrics"]["train"] == [{}, {"loss": 0.5}]
    assert ctx.get_metrics("train") == {"loss": 0.5} and ctx.get_metric("loss", "train", 2) == 0.5
    assert ctx.get_metrics("train", 1) == {} and ctx.get_metric("acc", "train") is None
    assert ctx.get_log("nothing", "train") is None and ctx.get_log("metrics", "train", 5) is None
    with pytest.raises(AttributeError):
        ctx.records = {}
    with pytest.raises(TypeError, match="`what` and `set` must be strings"):
        ctx.log(5, "train", 1.0)
    with pytest.raises(ValueError, match="`index` must be None or a 1-based int"):
        ctx.log("lr", "train", 1.0, index=0)


def test_opt_resolution_with_several_optimizers():
    ctx = pyluz.Context(
        model=None,
        accelerator=pyluz.Accelerator(cpu=True),
        callbacks=[],
        verbose=False,
        training=True,
        optimizers={"a": 1, "b": 2},
    )
    with pytest.raises(AttributeError, match="several optimizers"):
        _ = ctx.opt
    ctx.opt, ctx.opt_name = 2, "b"
    assert (ctx.opt, ctx.opt_name) == (2, "b")


@pytest.mark.parametrize(
    "batch, expected",
    [
        ((1, 2), (1, 2)),
        ([1, 2, 3], (1, 2)),
        ((1,), (1, None)),
        ({"x": 1, "y": 2}, (1, 2)),
        ({"input": 1, "target": 2}, (1, 2)),
        ({"a": 1}, ({"a": 1}, None)),
        (5, (5, None)),
    ],
)
def test_split_batch(batch, expected):
    assert split_batch(batch) == expected


def test_positional_dict_splits_by_position_and_survives_device_moves():
    # an R named list: the first entry is the input whatever the names (luz's batch[[1]])
    batch = PositionalDict(ids=torch.ones(2, 3), labels=torch.zeros(2))
    moved = to_device(batch, torch.device("cpu"))
    assert type(moved) is PositionalDict and list(moved) == ["ids", "labels"]
    x, y = split_batch(moved)
    assert x is moved["ids"] and y is moved["labels"]
    assert split_batch(PositionalDict(only=5)) == (5, None)
    assert split_batch({"ids": 1, "labels": 2}) == ({"ids": 1, "labels": 2}, None)  # Python dicts: by name


def test_ctx_is_cleaned_after_fit(xy):
    holder = {}

    class Keep(pyluz.Callback):
        def on_fit_begin(self):
            holder["ctx"] = self.ctx

    f = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=1, verbose=False, callbacks=[Keep()])
    )
    ctx = holder["ctx"]
    assert ctx.optimizers == {} and ctx.train_data is None and ctx.batch is None and ctx.pred is None
    assert ctx.records is f.records and ctx.model is f.model and ctx.callbacks == []
