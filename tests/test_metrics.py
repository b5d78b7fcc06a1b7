"""Tests for pyluz.metrics: values against scikit-learn, state handling, validation."""

import doctest
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    mean_absolute_error,
    mean_squared_error,
    roc_auc_score,
)

import pyluz.metrics as M
from pyluz.metrics import (
    MAE,
    MSE,
    RMSE,
    Accuracy,
    BinaryAccuracy,
    BinaryAccuracyWithLogits,
    BinaryAUROC,
    LossAverage,
    Metric,
    MetricSet,
    MulticlassAUROC,
    as_metric_set,
    metric_keys,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def feed(metric, preds, target, batch=37):
    """Update batch by batch (uneven last batch on purpose)."""
    for i in range(0, preds.shape[0], batch):
        metric.update(preds[i : i + batch], target[i : i + batch])
    return metric


def multiclass_data(n=500, c=4, seed=0):
    g = gen(seed)
    y = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g) + 1.5 * torch.nn.functional.one_hot(y, c)
    return logits, y


def binary_data(n=600, seed=0):
    g = gen(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    logits = torch.randn(n, generator=g) + 1.2 * y
    return logits, y


# ---------------------------------------------------------------------------
# values vs scikit-learn
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("index_base", [0, 1])
def test_accuracy_matches_sklearn(index_base):
    logits, y = multiclass_data()
    m = feed(Accuracy(index_base=index_base), logits, y + index_base)
    expected = accuracy_score(y.numpy(), logits.argmax(1).numpy())
    assert m.compute() == pytest.approx(expected, abs=1e-4)
    assert 0.3 < expected < 1.0  # non-trivial data


def test_accuracy_column_target_and_extra_dims():
    logits, y = multiclass_data(n=200)
    m = feed(Accuracy(), logits, y.unsqueeze(1))
    assert m.compute() == pytest.approx(accuracy_score(y.numpy(), logits.argmax(1).numpy()), abs=1e-4)
    # segmentation-like (B, C, L) with (B, L) targets
    g = gen(3)
    p = torch.randn(8, 3, 5, generator=g)
    t = torch.randint(0, 3, (8, 5), generator=g)
    m = Accuracy()
    m.update(p, t)
    assert m.compute() == pytest.approx((p.argmax(1) == t).double().mean().item(), abs=1e-12)


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_accuracy_matches_sklearn(threshold):
    logits, y = binary_data()
    probs = torch.sigmoid(logits)
    expected = accuracy_score(y.numpy(), (probs > threshold).numpy().astype(int))
    assert feed(BinaryAccuracy(threshold), probs, y.float()).compute() == pytest.approx(expected, abs=1e-4)
    assert feed(BinaryAccuracy(threshold), probs, y.bool()).compute() == pytest.approx(expected, abs=1e-4)
    assert feed(BinaryAccuracy(threshold), probs.unsqueeze(1), y).compute() == pytest.approx(expected, abs=1e-4)
    assert feed(BinaryAccuracyWithLogits(threshold), logits, y.float()).compute() == pytest.approx(expected, abs=1e-4)


def test_binary_accuracy_with_logits_inherits():
    m = BinaryAccuracyWithLogits(threshold=0.7)
    assert isinstance(m, BinaryAccuracy) and m.abbrev == "Acc" and m.threshold == 0.7


@pytest.mark.parametrize("cls", [MAE, MSE, RMSE])
def test_regression_matches_sklearn(cls):
    g = gen(1)
    target = torch.randn(333, generator=g) * 3
    preds = target + torch.randn(333, generator=g)
    ref = {
        MAE: mean_absolute_error(target.numpy(), preds.numpy()),
        MSE: mean_squared_error(target.numpy(), preds.numpy()),
        RMSE: math.sqrt(mean_squared_error(target.numpy(), preds.numpy())),
    }[cls]
    assert feed(cls(), preds, target).compute() == pytest.approx(ref, abs=1e-4)
    # (B, 1) preds with (B,) targets are flattened, not broadcast to B x B
    assert feed(cls(), preds.unsqueeze(1), target).compute() == pytest.approx(ref, abs=1e-4)
    # multi-output: mean over all elements
    p2, t2 = preds.reshape(111, 3), target.reshape(111, 3)
    assert feed(cls(), p2, t2).compute() == pytest.approx(ref, abs=1e-4)


def test_regression_abbrevs_and_state_dtype():
    assert [c().name for c in (MAE, MSE, RMSE)] == ["MAE", "MSE", "RMSE"]
    m = MSE()
    m.update(torch.tensor([1.0], dtype=torch.float16), torch.tensor([3.0]))
    assert m.sum_error.dtype == torch.float64 and m.compute() == 4.0


def test_binary_auroc_grid_and_exact():
    logits, y = binary_data()
    probs = torch.sigmoid(logits)
    expected = roc_auc_score(y.numpy(), probs.numpy())
    grid = feed(BinaryAUROC(), probs, y).compute()
    assert grid == pytest.approx(expected, abs=1e-2)
    exact = feed(BinaryAUROC(thresholds=probs.unique().tolist()), probs, y).compute()
    assert exact == pytest.approx(expected, abs=1e-4)
    # thresholds given as a tensor / numpy array, unsorted
    shuffled = probs[torch.randperm(len(probs), generator=gen(9))]
    assert feed(BinaryAUROC(thresholds=shuffled), probs, y).compute() == pytest.approx(expected, abs=1e-4)
    assert feed(BinaryAUROC(thresholds=shuffled.numpy()), probs, y).compute() == pytest.approx(expected, abs=1e-4)
    # from_logits applies the sigmoid
    from_logits = feed(BinaryAUROC(thresholds=probs.unique().tolist(), from_logits=True), logits, y).compute()
    assert from_logits == pytest.approx(expected, abs=1e-4)
    # 2-d preds/targets are flattened
    assert feed(BinaryAUROC(), probs.unsqueeze(1), y.unsqueeze(1).float()).compute() == pytest.approx(grid, abs=1e-12)


def test_binary_auroc_default_grid():
    m = BinaryAUROC(num_thresholds=5)
    eps = torch.finfo(torch.float32).eps
    assert torch.allclose(m.thresholds, torch.tensor([-eps, 0.25, 0.5, 0.75, 1 + eps]))
    assert BinaryAUROC(num_thresholds=2).thresholds.numel() == 2
    assert BinaryAUROC().thresholds.numel() == 200
    assert BinaryAUROC(thresholds=[0.5, 0.1]).thresholds[1:3].tolist() == pytest.approx([0.1, 0.5])


def test_binary_auroc_float64_preds():
    logits, y = binary_data(seed=4)
    probs = torch.sigmoid(logits).double()
    m = feed(BinaryAUROC(), probs, y)
    assert m.compute() == pytest.approx(roc_auc_score(y.numpy(), probs.numpy()), abs=1e-2)


def _sk_multiclass(y, probs, average, c):
    yy, pp = y.numpy(), probs.numpy().astype(np.float64)
    if average == "micro":
        return roc_auc_score(np.eye(c)[yy], pp, average="micro")
    if average == "none":
        return [roc_auc_score(yy == k, pp[:, k]) for k in range(c)]
    return roc_auc_score(yy, pp, multi_class="ovr", average=average)


@pytest.mark.parametrize("average", ["micro", "macro", "weighted", "none"])
def test_multiclass_auroc_matches_sklearn(average):
    c = 4
    logits, y = multiclass_data(c=c)
    probs = torch.softmax(logits, 1)
    expected = _sk_multiclass(y, probs, average, c)

    grid = feed(MulticlassAUROC(average=average), probs, y).compute()
    exact = feed(MulticlassAUROC(thresholds=probs.unique(), average=average), probs, y).compute()
    one_based = feed(MulticlassAUROC(thresholds=probs.unique(), average=average, index_base=1), probs, y + 1).compute()
    logit_based = feed(
        MulticlassAUROC(thresholds=probs.unique(), average=average, from_logits=True), logits, y
    ).compute()
    if average == "none":
        assert isinstance(grid, list) and len(grid) == c
        assert grid == pytest.approx(expected, abs=1e-2)
        for got in (exact, one_based, logit_based):
            assert got == pytest.approx(expected, abs=1e-4)
    else:
        assert isinstance(grid, float)
        assert grid == pytest.approx(expected, abs=1e-2)
        for got in (exact, one_based, logit_based):
            assert got == pytest.approx(expected, abs=1e-4)


def test_multiclass_auroc_softmax_is_over_classes():
    # luz's bug was a softmax without `dim`; over the batch dim the micro AUC is far off
    c = 3
    logits, y = multiclass_data(n=64, c=c, seed=5)
    probs = torch.softmax(logits, 1)
    good = MulticlassAUROC(thresholds=probs.unique(), average="micro", from_logits=True)
    good.update(logits, y)
    expected = _sk_multiclass(y, probs, "micro", c)
    assert good.compute() == pytest.approx(expected, abs=1e-4)
    wrong = _sk_multiclass(y, torch.softmax(logits, 0), "micro", c)
    assert abs(wrong - expected) > 1e-2


def test_multiclass_auroc_state_and_num_classes():
    m = MulticlassAUROC(average="macro")
    assert m.num_classes is None
    probs = torch.softmax(torch.randn(10, 3, generator=gen()), 1)
    m.update(probs, torch.arange(10) % 3)
    assert m.num_classes == 3 and m.pos_counts.shape == (3, 201)
    with pytest.raises(ValueError, match="3 classes"):
        m.update(torch.rand(4, 5), torch.zeros(4, dtype=torch.long))
    micro = MulticlassAUROC(num_classes=3)
    assert micro.pos_counts.shape == (1, 201)
    assert math.isnan(micro.compute())


def test_multiclass_auroc_extra_dims():
    g = gen(6)
    probs = torch.softmax(torch.randn(6, 3, 7, generator=g), 1)
    y = torch.randint(0, 3, (6, 7), generator=g)
    flat_p = probs.movedim(1, -1).reshape(-1, 3)
    a = MulticlassAUROC(thresholds=probs.unique(), average="macro")
    a.update(probs, y)
    b = MulticlassAUROC(thresholds=probs.unique(), average="macro")
    b.update(flat_p, y.reshape(-1))
    assert a.compute() == pytest.approx(b.compute(), abs=1e-12)


# ---------------------------------------------------------------------------
# LossAverage
# ---------------------------------------------------------------------------


def test_loss_average_one_optimizer_unweighted_mean():
    m = LossAverage()
    m.ctx = SimpleNamespace(loss=None)
    losses = [0.5, 1.25, 2.0, 0.1]
    for i, v in enumerate(losses):
        w = torch.tensor(v, requires_grad=True) * 1.0  # has a graph
        m.ctx.loss = {"opt": w} if i % 2 else w  # dict or bare tensor
        m.update(torch.randn(7 * (i + 1)), None)  # batch size must not matter
    out = m.compute()
    assert isinstance(out, float) and out == pytest.approx(sum(losses) / len(losses), abs=1e-6)
    assert m.name == "Loss"


def test_loss_average_two_optimizers_and_python_floats():
    m = LossAverage()
    m.ctx = SimpleNamespace(loss={"gen": torch.tensor(1.0), "disc": 3.0})
    m.update(None, None)
    m.ctx.loss = {"gen": torch.tensor(2.0), "disc": None}  # disc did not step
    m.update(None, None)
    m.ctx.loss = {"gen": 0.0, "disc": 5.0}
    m.update(None, None)
    out = m.compute()
    assert out == pytest.approx({"gen": 1.0, "disc": 4.0})
    assert list(out) == ["gen", "disc"]
    assert m.format(out) == "gen: 1 | disc: 4"  # luz: round(v, 4)


def test_loss_average_errors():
    m = LossAverage()
    with pytest.raises(RuntimeError, match="ctx"):
        m.update(None, None)
    m.ctx = SimpleNamespace(loss=torch.ones(3))
    with pytest.raises(ValueError, match="scalar"):
        m.update(None, None)
    m.ctx = SimpleNamespace(loss="x")
    with pytest.raises(TypeError, match="ctx.loss"):
        m.update(None, None)


# ---------------------------------------------------------------------------
# base behaviour: fresh, to, reduce_state, nan, no sync, compute is pure
# ---------------------------------------------------------------------------


def all_metrics():
    return [
        Accuracy(),
        Accuracy(index_base=1),
        BinaryAccuracy(0.3),
        BinaryAccuracyWithLogits(),
        MAE(),
        MSE(),
        RMSE(),
        BinaryAUROC(num_thresholds=50),
        BinaryAUROC(from_logits=True),
        MulticlassAUROC(),
        MulticlassAUROC(average="macro"),
        MulticlassAUROC(average="weighted"),
        MulticlassAUROC(average="none", num_classes=4),
    ]


def sample_for(metric, n=64, seed=0):
    logits, y = multiclass_data(n=n, c=4, seed=seed)
    if isinstance(metric, (Accuracy, MulticlassAUROC)):
        p = logits if isinstance(metric, Accuracy) else torch.softmax(logits, 1)
        return p, y + getattr(metric, "index_base", 0)
    if isinstance(metric, (BinaryAccuracy, BinaryAUROC)):
        bl, by = binary_data(n=n, seed=seed)
        with_logits = isinstance(metric, BinaryAccuracyWithLogits) or getattr(metric, "from_logits", False)
        return (bl if with_logits else torch.sigmoid(bl)), by.float()
    g = gen(seed)
    t = torch.randn(n, generator=g)
    return t + torch.randn(n, generator=g), t


def all_nan(value):
    values = value if isinstance(value, list) else [value]
    return all(isinstance(v, float) and math.isnan(v) for v in values)


@pytest.mark.parametrize("metric", all_metrics(), ids=repr)
def test_compute_before_update_is_nan(metric):
    assert all_nan(metric.compute())


def test_loss_average_nan_before_update():
    assert math.isnan(LossAverage().compute())


@pytest.mark.parametrize("metric", all_metrics(), ids=repr)
def test_fresh_resets_state_and_keeps_args(metric):
    p, t = sample_for(metric)
    metric.update(p, t)
    before = metric.compute()
    new = metric.fresh()
    assert type(new) is type(metric) and new is not metric
    assert repr(new) == repr(metric)
    for attr in ("threshold", "index_base", "average", "from_logits", "num_thresholds"):
        if hasattr(metric, attr):
            assert getattr(new, attr) == getattr(metric, attr)
    assert all_nan(new.compute())
    new.update(p, t)
    assert new.compute() == pytest.approx(before, nan_ok=True)
    assert metric.compute() == pytest.approx(before, nan_ok=True)  # original untouched


@pytest.mark.parametrize("metric", all_metrics(), ids=repr)
def test_compute_does_not_mutate_state(metric):
    p, t = sample_for(metric, n=96)
    metric.update(p[:40], t[:40])
    first = metric.compute()
    assert metric.compute() == pytest.approx(first, nan_ok=True)
    metric.update(p[40:], t[40:])
    whole = metric.fresh()
    whole.update(p, t)
    assert metric.compute() == pytest.approx(whole.compute(), nan_ok=True)


@pytest.mark.parametrize("metric", all_metrics(), ids=repr)
def test_reduce_state_doubling_keeps_value(metric):
    p, t = sample_for(metric, n=80)
    metric.update(p, t)
    before = metric.compute()
    thresholds = getattr(metric, "thresholds", None)
    thresholds = None if thresholds is None else thresholds.clone()
    calls = []

    def all_reduce(x):
        calls.append(x)
        x.mul_(2)

    metric.reduce_state(all_reduce)
    assert calls and all(isinstance(c, torch.Tensor) for c in calls)
    assert metric.compute() == pytest.approx(before, abs=1e-12)
    if thresholds is not None:  # configuration is not reduced
        assert torch.equal(metric.thresholds, thresholds)
        assert all(c is not metric.thresholds for c in calls)


def test_reduce_state_loss_average_dicts():
    m = LossAverage()
    m.ctx = SimpleNamespace(loss={"a": torch.tensor(1.0), "b": torch.tensor(4.0)})
    m.update(None, None)
    n = []
    m.reduce_state(lambda x: (n.append(1), x.mul_(3)))
    assert len(n) == 4  # two sums, two counts
    assert m.compute() == pytest.approx({"a": 1.0, "b": 4.0})


@pytest.mark.parametrize("metric", all_metrics() + [LossAverage()], ids=repr)
def test_to_moves_state_tensors(metric):
    if isinstance(metric, LossAverage):
        metric.ctx = SimpleNamespace(loss={"opt": torch.tensor(1.0)})
        metric.update(None, None)
    assert metric.to("cpu") is metric
    metric.to(torch.device("meta"))
    tensors = [v for v in vars(metric).values() if isinstance(v, torch.Tensor)]
    for v in vars(metric).values():
        if isinstance(v, dict):
            tensors += [x for x in v.values() if isinstance(x, torch.Tensor)]
    assert tensors and all(t.device.type == "meta" for t in tensors)
    if isinstance(metric, (MAE, LossAverage)):  # float64 accumulators kept off MPS
        assert any(t.dtype == torch.float64 for t in tensors)


def test_to_casts_float64_for_mps(monkeypatch):
    from pyluz.metrics import base

    real_to = torch.Tensor.to

    def fake_to(self, *args, **kwargs):  # pretend to move; keep the requested dtype
        kwargs["device"] = "cpu"
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", fake_to)
    m = MAE()
    m.to(torch.device("mps"))
    monkeypatch.undo()
    assert m.sum_error.dtype == torch.float32 and m.count.dtype == torch.int64
    assert base.accum_dtype("mps") == torch.float32 and base.accum_dtype("cpu") == torch.float64


def test_update_with_grad_tensors():
    x = torch.randn(10, 3, requires_grad=True)
    y = torch.randint(0, 3, (10,), generator=gen())
    for m in (Accuracy(), MulticlassAUROC(from_logits=True)):
        m.update(x * 2, y)
        assert not any(t.requires_grad for t in vars(m).values() if isinstance(t, torch.Tensor))
    for m in (MAE(), BinaryAccuracyWithLogits(), BinaryAUROC(from_logits=True)):
        m.update(x[:, 0] * 2, (y > 0).float())
        assert not any(t.requires_grad for t in vars(m).values() if isinstance(t, torch.Tensor))


def test_update_does_no_host_sync(monkeypatch):
    metrics = all_metrics()
    loss = LossAverage()
    loss.ctx = SimpleNamespace(loss={"opt": torch.tensor(0.5, requires_grad=True) * 2, "b": 1.5})
    samples = [sample_for(m) for m in metrics]

    def boom(*a, **k):
        raise AssertionError("host sync during update")

    for name in ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, boom)
    with pytest.raises(AssertionError, match="host sync"):
        bool(torch.tensor(1))  # the patch is active
    for _ in range(3):
        for m, (p, t) in zip(metrics, samples, strict=True):
            m.update(p, t)
        loss.update(None, None)
    monkeypatch.undo()
    for m, (p, t) in zip(metrics, samples, strict=True):
        ref = m.fresh()
        for _ in range(3):
            ref.update(p, t)
        assert m.compute() == pytest.approx(ref.compute(), nan_ok=True)
    assert loss.compute() == pytest.approx({"opt": 1.0, "b": 1.5})


def test_custom_metric_subclass():
    class Count(Metric):
        def __init__(self, scale, *, offset=0):
            self.scale, self.offset = scale, offset
            self.n = torch.zeros((), dtype=torch.int64)
            self.stats = {"s": torch.zeros(())}

        def update(self, preds, target):
            self.n += preds.shape[0]
            self.stats["s"] += preds.sum()

        def compute(self):
            return self.n.item() * self.scale + self.offset

    m = Count(2, offset=1)
    m.update(torch.ones(3), None)
    assert m.compute() == 7 and m.name == "Count" and repr(m) == "Count(2, offset=1)"
    assert m.fresh().compute() == 1
    m.reduce_state(lambda t: t.add_(t))
    assert m.n.item() == 6 and m.stats["s"].item() == 6.0

    class NoImpl(Metric):
        pass

    with pytest.raises(NotImplementedError):
        NoImpl().update(None, None)
    with pytest.raises(NotImplementedError):
        NoImpl().compute()


# ---------------------------------------------------------------------------
# formatting, names, keys, metric sets
# ---------------------------------------------------------------------------


def test_format():
    m = Accuracy()
    # luz: round(v, 4), printed as R prints numbers
    assert m.format(0.95) == "0.95"
    assert m.format(0.123456) == "0.1235"
    assert m.format(1.645) == "1.645"
    assert m.format(1) == "1"
    assert m.format(123456.789123) == "123456.7891"
    assert m.format(float("nan")) == "NaN"
    assert m.format(float("inf")) == "Inf"
    assert m.format({"a": 0.5, "b": 2}) == "a: 0.5 | b: 2"
    assert m.format([0.5, 0.25]) == "0.5 | 0.25"
    assert m.format(torch.tensor(0.5)) == "0.5"


def test_names():
    assert [m.name for m in all_metrics()[:5]] == ["Acc", "Acc", "Acc", "Acc", "MAE"]
    assert BinaryAUROC().name == "AUC" and MulticlassAUROC().name == "AUC"
    m = Accuracy()
    m.abbrev = "Top1"
    assert m.name == "Top1"


def test_metric_keys_suffixes():
    ms = [LossAverage(), Accuracy(), BinaryAccuracy(), BinaryAccuracyWithLogits(), MAE()]
    assert metric_keys(ms) == ["loss", "acc", "acc_2", "acc_3", "mae"]
    assert metric_keys([]) == []


def test_metric_set_for_phase_order_and_freshness():
    acc, mae, auc = Accuracy(index_base=1), MAE(), BinaryAUROC(num_thresholds=10)
    acc.update(torch.tensor([[0.0, 1.0]]), torch.tensor([2]))  # template state must not leak
    ms = MetricSet(metrics=[acc], train_metrics=mae, valid_metrics=[auc])
    train = ms.for_phase("train")
    valid = ms.for_phase("valid")
    assert [type(m) for m in train] == [LossAverage, Accuracy, MAE]
    assert [type(m) for m in valid] == [LossAverage, Accuracy, BinaryAUROC]
    assert train[1] is not acc and train[1].index_base == 1 and math.isnan(train[1].compute())
    assert valid[2].num_thresholds == 10
    again = ms.for_phase("train")
    assert all(a is not b for a, b in zip(train, again, strict=True))
    assert [type(m) for m in MetricSet().for_phase("valid")] == [LossAverage]
    with pytest.raises(ValueError, match="phase"):
        ms.for_phase("test")


def test_metric_set_rejects_classes_and_junk():
    with pytest.raises(TypeError, match="Did you forget to instantiate the metric?"):
        MetricSet([Accuracy])
    with pytest.raises(TypeError, match="Did you forget to instantiate the metric?"):
        MetricSet(valid_metrics=MAE)
    with pytest.raises(TypeError, match="Did you forget to instantiate the metric?"):
        as_metric_set([Accuracy(), MAE])
    with pytest.raises(TypeError, match="train_metrics"):
        MetricSet(train_metrics=["acc"])
    with pytest.raises(TypeError, match="metrics"):
        MetricSet(metrics=3)


def test_as_metric_set():
    ms = MetricSet([MAE()])
    assert as_metric_set(ms) is ms
    assert as_metric_set(None).metrics == []
    a = Accuracy()
    assert as_metric_set(a).metrics == [a]
    assert as_metric_set([a, MAE()]).metrics[0] is a
    assert len(as_metric_set((a,)).metrics) == 1
    with pytest.raises(
        TypeError, match="`metrics` must be a pyluz Metric, a torchmetrics metric or a function .* got str"
    ):
        as_metric_set("acc")
    with pytest.raises(TypeError, match="Did you forget to instantiate the metric?"):
        as_metric_set(Accuracy)


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: BinaryAccuracy("a"), r"BinaryAccuracy: `threshold` must be a number in \[0, 1\], got 'a'"),
        (lambda: BinaryAccuracy(1.5), r"`threshold` must be a number in \[0, 1\]"),
        (lambda: BinaryAccuracy(True), r"`threshold`"),
        (lambda: BinaryAccuracyWithLogits(-0.1), r"BinaryAccuracyWithLogits: `threshold`"),
        (lambda: Accuracy(index_base=2), r"Accuracy: `index_base` must be one of 0, 1, got 2"),
        (lambda: Accuracy(index_base="1"), r"`index_base`"),
        (lambda: BinaryAUROC(num_thresholds=1), r"BinaryAUROC: `num_thresholds` must be an integer >= 2"),
        (lambda: BinaryAUROC(num_thresholds=10.5), r"`num_thresholds`"),
        (lambda: BinaryAUROC(thresholds=[]), r"`thresholds`.*empty"),
        (lambda: BinaryAUROC(thresholds=[0.1, float("nan")]), r"`thresholds`"),
        (lambda: BinaryAUROC(thresholds=["a"]), r"`thresholds`"),
        (lambda: BinaryAUROC(thresholds=0.5), r"`thresholds`"),
        (lambda: BinaryAUROC(thresholds=torch.rand(2, 2)), r"`thresholds`.*shape"),
        (
            lambda: MulticlassAUROC(average="mean"),
            r'MulticlassAUROC: `average` must be one of "micro", "macro", "weighted", "none", got \'mean\'',
        ),
        (lambda: MulticlassAUROC(index_base=-1), r"MulticlassAUROC: `index_base`"),
        (lambda: MulticlassAUROC(num_classes=0), r"`num_classes`"),
    ],
)
def test_constructor_validation(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_a_flag_of_the_wrong_kind_is_a_type_error():
    with pytest.raises(TypeError, match=r"BinaryAUROC: `from_logits` must be True or False, got 'yes'\."):
        BinaryAUROC(from_logits="yes")


def test_integral_floats_accepted_from_r():
    assert BinaryAUROC(num_thresholds=200.0).num_thresholds == 200
    assert Accuracy(index_base=1.0).index_base == 1
    assert BinaryAccuracy(threshold=1).threshold == 1.0


def test_update_shape_and_type_errors():
    with pytest.raises(ValueError, match="same number of elements"):
        MAE().update(torch.rand(4, 2), torch.rand(4))
    with pytest.raises(ValueError, match="same number of elements"):
        BinaryAUROC().update(torch.rand(4), torch.rand(5))
    with pytest.raises(ValueError, match=r"Accuracy: `preds` must have shape \(batch, num_classes"):
        Accuracy().update(torch.rand(4), torch.zeros(4))
    with pytest.raises(ValueError, match="one class index per sample"):
        Accuracy().update(torch.rand(4, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="one class index per sample"):
        MulticlassAUROC().update(torch.rand(4, 3), torch.zeros(5))
    with pytest.raises(TypeError, match="`preds` must be a torch.Tensor"):
        BinaryAccuracy().update([0.1], torch.zeros(1))
    with pytest.raises(TypeError, match="`target` must be a torch.Tensor"):
        MSE().update(torch.zeros(1), np.zeros(1))


def test_docstring_examples():
    from pyluz.metrics import auroc, base, classification, regression

    for mod in (base, classification, regression, auroc):
        result = doctest.testmod(mod)
        assert result.failed == 0 and result.attempted > 0, mod.__name__


def test_public_names():
    for name in (
        "Metric",
        "MetricSet",
        "LossAverage",
        "Accuracy",
        "BinaryAccuracy",
        "BinaryAccuracyWithLogits",
        "MAE",
        "MSE",
        "RMSE",
        "BinaryAUROC",
        "MulticlassAUROC",
        "as_metric_set",
        "metric_keys",
    ):
        assert name in M.__all__ and hasattr(M, name)
    for name in M.__all__:
        obj = getattr(M, name)
        assert obj.__doc__, name


def test_loss_average_folds_pending_losses_in_groups(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(LossAverage, "FOLD_EVERY", 3)
    m = LossAverage()
    m.ctx = SimpleNamespace(loss={})
    values = [0.5, 1.25, 2.0, 4.0, 0.25, 3.0, 1.0]
    for i, v in enumerate(values, start=1):
        m.ctx.loss = {"opt": torch.tensor(v)}
        m.update(None, None)
        assert len(m.pending["opt"]) == i % 3  # folded every 3 batches
    assert m.compute() == pytest.approx(sum(values) / len(values))
    assert m.compute() == pytest.approx(sum(values) / len(values))  # compute() does not change the value
