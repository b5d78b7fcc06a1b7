"""metrics= with torchmetrics objects and plain functions, checked against scikit-learn and torchmetrics."""

import functools

import pytest
import torch
from torch import nn

import pyluz
from pyluz.metrics import FunctionMetric, MetricSet, TorchMetric, as_metric_set
from helpers import Net, classification_data

torchmetrics = pytest.importorskip("torchmetrics")
sklearn_metrics = pytest.importorskip("sklearn.metrics")
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score  # noqa: E402


def three_class_data(n, seed):
    return classification_data(n, seed, label=lambda x: (x[:, 0] > 0.4).long() + (x[:, 1] > 0).long())


class Recorder(pyluz.Callback):
    """The (pred class, target) pairs every metric saw, per phase and epoch."""

    def __init__(self):
        self.seen = {}

    def _keep(self, phase):
        key = (phase, self.ctx.epoch)
        self.seen.setdefault(key, []).append((self.ctx.pred.detach().argmax(1), self.ctx.target))

    def on_train_batch_end(self):
        self._keep("train")

    def on_valid_batch_end(self):
        self._keep("valid")

    def classes(self, phase, epoch):
        pairs = self.seen[(phase, epoch)]
        return torch.cat([p for p, _ in pairs]).numpy(), torch.cat([t for _, t in pairs]).numpy()


class HeldF1(pyluz.Metric):
    """The "obvious" wrapper: a pyluz Metric around a torchmetrics object passed to it."""

    abbrev = "held_f1"

    def __init__(self, metric):
        self.metric = metric

    def update(self, preds, target):
        self.metric.update(preds, target)

    def compute(self):
        return self.metric.compute().item()


def error_rate(preds, target):
    return (preds.argmax(dim=1) != target).float().mean()


def test_torchmetrics_and_functions_match_sklearn_every_epoch_and_phase():
    x, y = three_class_data(150, 0)
    xv, yv = three_class_data(45, 1)  # valid batches 32 + 13: the smaller last batch must weigh 13 rows
    torch.manual_seed(0)
    rec = Recorder()
    fitted = (
        pyluz.setup(
            Net,
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.Adam,
            metrics=[
                MulticlassF1Score(num_classes=3, average="macro"),
                HeldF1(MulticlassF1Score(num_classes=3, average="macro")),
                error_rate,
            ],
        )
        .set_hparams(n_out=3, hidden=16)
        .set_opt_hparams(lr=0.05)
        .fit(
            (x, y), epochs=3, valid_data=(xv, yv), callbacks=[rec], verbose=False, dataloader_options={"batch_size": 32}
        )
    )
    records = fitted.records["metrics"]
    for phase in ("train", "valid"):
        assert len(records[phase]) == 3
        for epoch in (1, 2, 3):
            got = records[phase][epoch - 1]
            assert list(got) == ["loss", "multiclassf1score", "held_f1", "error_rate"]
            pred, target = rec.classes(phase, epoch)
            f1 = sklearn_metrics.f1_score(target, pred, average="macro")
            assert got["multiclassf1score"] == pytest.approx(f1, abs=1e-6)
            assert got["held_f1"] == pytest.approx(f1, abs=1e-6)  # its torchmetrics state is fresh too
            assert got["error_rate"] == pytest.approx(1 - sklearn_metrics.accuracy_score(target, pred), abs=1e-6)
    # the values really change between epochs and phases (nothing is carried over)
    assert len({records[p][e]["multiclassf1score"] for p in ("train", "valid") for e in range(3)}) > 3
    # the user's own objects were never updated
    assert HeldF1(MulticlassF1Score(3)).metric.update_count == 0

    ev = fitted.evaluate(
        (xv, yv), metrics=[MulticlassAccuracy(num_classes=3, average="micro"), error_rate], verbose=False
    )
    pred = fitted.predict(xv).argmax(1).numpy()
    acc = sklearn_metrics.accuracy_score(yv.numpy(), pred)
    assert ev["multiclassaccuracy"] == pytest.approx(acc, abs=1e-6)
    assert ev["error_rate"] == pytest.approx(1 - acc, abs=1e-6)


def test_per_sample_function_values_and_vector_torchmetrics():
    def abs_err(preds, target):  # one value per sample
        return (preds - target).abs()

    m = FunctionMetric(abs_err).fresh()
    m.update(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 1.0, 1.0]))
    m.update(torch.tensor([0.0]), torch.tensor([2.0]))
    assert m.compute() == pytest.approx((0 + 1 + 3 + 2) / 4)
    with pytest.raises(ValueError, match="one value per sample, got a tensor of shape \\(2,\\)"):
        FunctionMetric(lambda p, t: torch.zeros(2), name="bad").update(torch.zeros(3), torch.zeros(3))

    per_class = TorchMetric(MulticlassF1Score(num_classes=3, average=None)).fresh()
    per_class.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]))
    want = sklearn_metrics.f1_score([0, 1, 1, 2], [0, 1, 2, 2], average=None)
    assert per_class.compute() == pytest.approx(list(want))


def test_names_and_errors():
    def my_metric(preds, target, scale=1.0):
        return (preds - target).mean() * scale

    ms = as_metric_set(
        [
            my_metric,
            functools.partial(my_metric, scale=2.0),
            nn.L1Loss(),
            torchmetrics.MetricCollection({"f1": MulticlassF1Score(3), "acc": MulticlassAccuracy(3)}),
            FunctionMetric(lambda p, t: p.mean(), name="mean_pred"),
        ]
    )
    assert [m.name for m in ms.for_phase("train")] == [
        "Loss",
        "my_metric",
        "my_metric",
        "L1Loss",
        "acc",
        "f1",
        "mean_pred",
    ]
    assert TorchMetric(MulticlassF1Score(3), name="F1").name == "F1"
    with pytest.raises(ValueError, match=r"`metrics\[0\]`: a lambda has no name"):
        as_metric_set([lambda p, t: p.mean()])
    with pytest.raises(TypeError, match="Did you forget to instantiate the metric"):
        MetricSet(valid_metrics=MulticlassF1Score)
    with pytest.raises(TypeError, match=r"`metrics\[1\]` must be a pyluz Metric, a torchmetrics metric"):
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, metrics=[error_rate, "f1"])


def test_torchmetric_state_moves_with_the_metric():
    m = TorchMetric(MulticlassF1Score(3)).fresh().to("meta")
    assert m.metric.tp.device.type == "meta"
    f = FunctionMetric(error_rate).fresh().to("meta")
    assert f.total.device.type == "meta" and f.count.device.type == "meta"


# Under DDP: tests/distributed/ddp_check.py (check_ecosystem_metrics, `make test-ddp`).
