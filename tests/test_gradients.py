"""GradientClip, GradientAccumulation and TerminateOnNaN against hand-written torch loops."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.data import IterableDataset

import pyluz
from helpers import hand_loop, regression_data, slices
from pyluz.callbacks import GradientAccumulation, GradientClip, MixedPrecision, TerminateOnNaN


def data(n=40, seed=0):
    return regression_data(n, seed, scale=3.0, noise=1.0)


def linear(lr=0.1, seed=1):
    torch.manual_seed(seed)
    net = nn.Linear(3, 1)
    return net, pyluz.setup(net, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=lr)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


# -- GradientClip --------------------------------------------------------------------------------


class Grads(pyluz.Callback):
    """Copies the gradients at on_train_batch_before_step (before or after the clip, by weight)."""

    def __init__(self, weight):
        self.weight, self.seen = weight, []

    def on_train_batch_before_step(self):
        self.seen.append(grads(self.ctx.model))


def total_norm(gs, norm_type=2.0):
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, norm_type) for g in gs]), norm_type)


@pytest.mark.parametrize("norm_type", [2, 1, math.inf])
def test_gradient_clip_matches_torch_clipping(norm_type):
    net, model = linear(lr=0.01)
    before, after = Grads(-1), Grads(1)
    model.fit(
        data(),
        epochs=2,
        callbacks=[before, GradientClip(max_norm=0.5, norm_type=norm_type), after],
        verbose=False,
        dataloader_options={"batch_size": 8},
    )
    assert len(after.seen) == 10
    clipped_any = False
    for raw, got in zip(before.seen, after.seen, strict=True):
        assert total_norm(got, norm_type) <= 0.5 + 1e-5
        ref = [nn.Parameter(torch.zeros_like(g)) for g in raw]
        for p, g in zip(ref, raw, strict=True):
            p.grad = g.clone()
        torch.nn.utils.clip_grad_norm_(ref, 0.5, norm_type)
        for p, g in zip(ref, got, strict=True):
            torch.testing.assert_close(g, p.grad, rtol=0, atol=0)
        clipped_any |= bool(total_norm(raw, norm_type) > 0.5)
    assert clipped_any


def test_gradient_clip_zero_means_no_learning():
    net, model = linear(lr=0.5)
    start = params(net)
    fitted = model.fit(data(), epochs=3, valid_data=data(16, 2), callbacks=[GradientClip(max_norm=0)], verbose=False)
    for p, q in zip(start, params(fitted.model), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    valid = [r["loss"] for r in fitted.records["metrics"]["valid"]]
    assert valid[0] == valid[1] == valid[2]


def test_gradient_clip_validates_arguments():
    with pytest.raises(ValueError, match="`max_norm` should be a numeric scalar value"):
        GradientClip(max_norm="1")
    with pytest.raises(ValueError, match="`max_norm`.*got -1"):
        GradientClip(max_norm=-1)
    with pytest.raises(ValueError, match="`norm_type`.*got True"):
        GradientClip(norm_type=True)
    assert GradientClip(norm_type="inf").norm_type == math.inf


# -- GradientAccumulation -------------------------------------------------------------------------


def sgd_reference(net, x, y, batch_sizes, epochs, lr=0.1):
    """The hand-written loop with SGD and MSE over consecutive batches of `batch_sizes`."""
    return hand_loop(
        net, torch.optim.SGD(net.parameters(), lr=lr), slices(x, y, batch_sizes), nn.functional.mse_loss, epochs
    )


class Losses(pyluz.Callback):
    weight = 1  # after GradientAccumulation scaled loss_grad

    def __init__(self):
        self.loss, self.loss_grad = [], []

    def on_train_batch_before_step(self):
        self.loss.append(self.ctx.loss["opt"].item())
        self.loss_grad.append(self.ctx.loss_grad.item())


@pytest.mark.parametrize("n, steps, groups", [(40, 2, [16, 16, 8]), (64, 4, [32, 32]), (24, 1, [8, 8, 8])])
def test_accumulation_equals_one_step_on_a_bigger_batch(n, steps, groups):
    x, y = data(n)
    net, model = linear()
    ref = sgd_reference(copy.deepcopy(net), x, y, groups, epochs=2)
    losses = Losses()
    fitted = model.fit(
        (x, y),
        epochs=2,
        callbacks=[GradientAccumulation(steps), losses],
        verbose=False,
        dataloader_options={"batch_size": 8, "shuffle": False},
    )
    for p, q in zip(params(fitted.model), params(ref), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    # ctx.loss (and so the metrics) stays unscaled; only the backpropagated loss is divided.
    sizes = [g // 8 for g in groups for _ in range(g // 8)] * 2
    assert losses.loss_grad == pytest.approx([loss / s for loss, s in zip(losses.loss, sizes, strict=True)], rel=1e-6)
    per_epoch = len(losses.loss) // 2
    assert fitted.records["metrics"]["train"][0]["loss"] == pytest.approx(
        sum(losses.loss[:per_epoch]) / per_epoch, rel=1e-6
    )


class Stream(IterableDataset):
    """Samples with no known length: the last accumulation group is found at the end of the epoch."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y, strict=True))


def test_accumulation_with_unknown_length_flushes_the_last_group():
    x, y = data(40)
    net, model = linear()
    ref = sgd_reference(copy.deepcopy(net), x, y, [24, 16], epochs=2)
    fitted = model.fit(
        Stream(x, y), epochs=2, callbacks=[GradientAccumulation(3)], verbose=False, dataloader_options={"batch_size": 8}
    )
    for p, q in zip(params(fitted.model), params(ref), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_accumulation_with_clip_clips_once_per_real_step_and_works_with_mixed_precision():
    x, y = data(40)
    net, model = linear()
    after = Grads(1)
    fitted = model.fit(
        (x, y),
        epochs=1,
        callbacks=[GradientAccumulation(2), GradientClip(0.1), MixedPrecision(), after],
        verbose=False,
        dataloader_options={"batch_size": 8, "shuffle": False},
    )
    stepped = [g for i, g in enumerate(after.seen) if i in (1, 3, 4)]  # group ends
    assert all(total_norm(g) <= 0.1 + 1e-5 for g in stepped)
    assert any(total_norm(g) > 0.1 for i, g in enumerate(after.seen) if i in (0, 2))  # held: not clipped
    assert all(torch.isfinite(p).all() for p in fitted.model.parameters())


def test_accumulation_validates_steps():
    with pytest.raises(ValueError, match="`steps` must be an integer >= 1, got 0"):
        GradientAccumulation(0)
    with pytest.raises(ValueError, match="got 1.5"):
        GradientAccumulation(1.5)


# -- TerminateOnNaN -------------------------------------------------------------------------------


class NaNAt:
    """MSE loss that returns NaN from its `at`-th call (training calls only)."""

    def __init__(self, at):
        self.at, self.calls = at, 0

    def __call__(self, pred, target):
        loss = nn.functional.mse_loss(pred, target)
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls >= self.at:
                return loss * float("nan")
        return loss


class Ends(pyluz.Callback):
    def __init__(self):
        self.events = []

    def on_early_stopping(self):
        self.events.append("early_stopping")

    def on_fit_end(self):
        self.events.append("fit_end")


def test_terminate_on_nan_stops_at_the_first_non_finite_loss():
    x, y = data(32)
    net, model = linear(lr=0.05)
    loss = NaNAt(7)  # 4 batches per epoch: epoch 2, iter 3
    model = pyluz.setup(net, loss=loss, optimizer=torch.optim.SGD).set_opt_hparams(lr=0.05)
    ref = sgd_reference(copy.deepcopy(net), x, y, [8] * 4, epochs=1, lr=0.05)
    ref = sgd_reference(ref, x, y, [8] * 2, epochs=1, lr=0.05)  # SGD has no state: same as one loop
    cb, ends = TerminateOnNaN(), Ends()
    fitted = model.fit(
        (x, y), epochs=5, callbacks=[cb, ends], verbose=False, dataloader_options={"batch_size": 8, "shuffle": False}
    )
    assert cb.stopped_at == (2, 3)
    assert ends.events == ["early_stopping", "fit_end"]
    assert len(fitted.records["metrics"]["train"]) == 1 and math.isfinite(fitted.records["metrics"]["train"][0]["loss"])
    # Stopped before the NaN reached the weights: they are those after the 6 finite steps.
    for p, q in zip(params(fitted.model), params(ref), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


class OwnStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 1)
        self.calls = 0

    def forward(self, x):
        return self.fc(x)

    def step(self):
        ctx = self.ctx
        ctx.pred = self(ctx.input)
        self.calls += 1
        ctx.loss = {"opt": torch.tensor(float("inf") if self.calls == 3 else 1.0)}


def test_terminate_on_nan_with_a_custom_step():
    cb = TerminateOnNaN()
    model = pyluz.setup(OwnStep, optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    model.fit(data(32), epochs=3, callbacks=[cb], verbose=False, dataloader_options={"batch_size": 8})
    assert cb.stopped_at == (1, 3)
