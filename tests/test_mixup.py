"""mixup(), MixupLoss and the MixUp callback against manual computations."""

import pytest
import torch
from torch import nn

import pyluz
from helpers import classification_data
from pyluz.callbacks import MixUp, MixupLoss, mixup
from pyluz.metrics import Accuracy, MetricSet


def test_mixup_matches_manual_computation_for_a_fixed_seed():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 2, 3, generator=g)
    y = torch.arange(6)
    w = torch.rand(6, generator=g)
    torch.manual_seed(11)
    mixed, ((y1, y2), weight) = mixup(x, y, w)
    torch.manual_seed(11)
    perm = torch.randperm(6)
    manual = x * (1 - w).reshape(6, 1, 1) + x[perm] * w.reshape(6, 1, 1)
    torch.testing.assert_close(mixed, manual)
    assert torch.equal(y1, y) and torch.equal(y2, y[perm])
    assert weight.shape == (6,) and torch.equal(weight, w)


def test_mixup_validates_inputs():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="`weight` must have shape \\(4,\\) or \\(4, 1\\), got \\(4, 2\\)"):
        mixup(x, torch.zeros(4), torch.ones(4, 2))
    # luz's B x 1 weights are the same weights
    torch.manual_seed(0)
    a = mixup(x, torch.zeros(4), torch.full((4, 1), 0.3))
    torch.manual_seed(0)
    b = mixup(x, torch.zeros(4), torch.full((4,), 0.3))
    torch.testing.assert_close(a[0], b[0])
    assert a[1][1].shape == (4,)
    with pytest.raises(ValueError, match="`y` must be a tensor with first dimension 4"):
        mixup(x, torch.zeros(3), torch.ones(4))
    with pytest.raises(TypeError, match="floating point"):
        mixup(torch.ones(4, 3, dtype=torch.long), torch.zeros(4), torch.ones(4))


def test_mixup_loss_equals_manual_lerp_of_per_sample_losses():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=g)
    y1, y2 = torch.randint(0, 5, (8,), generator=g), torch.randint(0, 5, (8,), generator=g)
    w = torch.rand(8, generator=g)
    ce = nn.CrossEntropyLoss()
    loss = MixupLoss(ce)
    got = loss(logits, ((y1, y2), w))
    l1 = nn.functional.cross_entropy(logits, y1, reduction="none")
    l2 = nn.functional.cross_entropy(logits, y2, reduction="none")
    torch.testing.assert_close(got, ((1 - w) * l1 + w * l2).mean())
    # luz's (B, 1) weight would broadcast to B x B and give another number:
    assert not torch.allclose(got, torch.lerp(l1, l2, w.reshape(8, 1)).mean())
    assert ce.reduction == "mean"  # restored
    torch.testing.assert_close(loss(logits, y1), l1.mean())  # plain targets pass through


def test_mixup_loss_with_elementwise_losses():
    g = torch.Generator().manual_seed(1)
    pred, y1, y2 = (torch.randn(6, 3, generator=g) for _ in range(3))
    w = torch.rand(6, generator=g)
    got = MixupLoss(nn.MSELoss())(pred, ((y1, y2), w))
    manual = ((1 - w)[:, None] * (pred - y1) ** 2 + w[:, None] * (pred - y2) ** 2).mean()
    torch.testing.assert_close(got, manual)
    with pytest.raises(TypeError, match="`loss` must be a loss module with a `reduction`"):
        MixupLoss(lambda p, t: (p - t).abs().mean())


def classification(n=96, seed=0):
    return classification_data(n, seed, label=lambda x: (x[:, 0] + x[:, 1] > 0).long())


class SeeBatch(pyluz.Callback):
    weight = 1  # after MixUp

    def __init__(self):
        self.seen = []

    def on_train_batch_begin(self):
        self.seen.append(
            (self.ctx.batch[0].clone(), self.ctx.batch[1].clone(), self.ctx.input.clone(), self.ctx.target)
        )


def find_partner(x, mixed, w):
    """Indices j with mixed[i] == lerp(x[i], x[j], w[i])."""
    perm = []
    for i in range(x.shape[0]):
        err = (torch.lerp(x[i].expand_as(x), x, w[i]) - mixed[i]).abs().amax(dim=1)
        perm.append(int(err.argmin()))
        assert err.min() < 1e-6
    return torch.tensor(perm)


def test_mixup_callback_mixes_batches_and_logs_valid_metrics():
    x, y = classification()
    see = SeeBatch()
    torch.manual_seed(0)
    model = pyluz.setup(
        nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=MetricSet(valid_metrics=[Accuracy()])
    ).set_hparams(in_features=4, out_features=2)
    fitted = model.fit(
        (x, y), epochs=2, valid_data=classification(32, 1), callbacks=[MixUp(auto_loss=True), see], verbose=False
    )
    assert list(fitted.records["metrics"]["train"][1]) == ["loss"]
    assert list(fitted.records["metrics"]["valid"][1]) == ["loss", "acc"]
    assert len(see.seen) == 6
    for xb, yb, mixed, target in see.seen:
        (y1, y2), w = target
        assert w.shape == (32,) and bool(((w >= 0.5) & (w <= 1)).all())
        perm = find_partner(xb, mixed, w)
        assert torch.equal(y1, yb) and torch.equal(y2, yb[perm])
    # The validation loss used the plain loss: equal to evaluating the final model.
    ev = fitted.evaluate(classification(32, 1), verbose=False)
    assert fitted.records["metrics"]["valid"][1]["loss"] == pytest.approx(ev["loss"], rel=1e-6)


def test_mixup_is_reproducible_with_torch_seed():
    x, y = classification()
    runs = []
    for _ in range(2):
        see = SeeBatch()
        torch.manual_seed(5)
        pyluz.setup(nn.Linear, loss=MixupLoss(nn.CrossEntropyLoss()), optimizer=torch.optim.SGD).set_hparams(
            in_features=4, out_features=2
        ).set_opt_hparams(lr=0.1).fit((x, y), epochs=1, callbacks=[MixUp(alpha=0.2), see], verbose=False)
        runs.append(see.seen)
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a[2], b[2], rtol=0, atol=0)
        torch.testing.assert_close(a[3][1], b[3][1], rtol=0, atol=0)


class LossFnAt(pyluz.Callback):
    weight = 1

    def __init__(self):
        self.seen = {}

    def on_valid_batch_after_loss(self):
        self.seen["valid_target_is_mixed"] = isinstance(self.ctx.target, tuple)

    def on_epoch_end(self):
        self.seen["loss_fn"] = self.ctx.loss_fn


def test_run_valid_with_auto_loss_works_and_restores_the_loss():
    x, y = classification()
    loss = nn.CrossEntropyLoss()
    at = LossFnAt()
    fitted = (
        pyluz.setup(nn.Linear, loss=loss, optimizer=torch.optim.Adam)
        .set_hparams(in_features=4, out_features=2)
        .fit(
            (x, y),
            epochs=2,
            valid_data=classification(32, 1),
            callbacks=[MixUp(run_valid=True, auto_loss=True), at],
            verbose=False,
        )
    )
    assert at.seen == {"valid_target_is_mixed": True, "loss_fn": loss}
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in fitted.records["metrics"]["valid"])


def test_auto_loss_with_a_per_sample_loss_in_validation():
    # luz style: the loss has reduction="none"; validation without run_valid averages it.
    x, y = classification()
    fitted = (
        pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(reduction="none"), optimizer=torch.optim.Adam)
        .set_hparams(in_features=4, out_features=2)
        .fit((x, y), epochs=1, valid_data=classification(32, 1), callbacks=[MixUp(auto_loss=True)], verbose=False)
    )
    xv, yv = classification(32, 1)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(fitted.model(xv), yv).item()
    assert fitted.records["metrics"]["valid"][0]["loss"] == pytest.approx(expected, rel=1e-6)


def test_mixup_callback_validates_arguments():
    with pytest.raises(ValueError, match="`alpha` must be a positive number, got 0"):
        MixUp(alpha=0)
    with pytest.raises(TypeError, match="`run_valid` must be True or False"):
        MixUp(run_valid="yes")
