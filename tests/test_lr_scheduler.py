"""LRScheduler: learning rates per epoch/batch vs hand computations, ReduceLROnPlateau's metric, opt_name."""

import warnings

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau, StepLR

import pyluz
from helpers import TwoOpt, regression_data
from pyluz.callbacks import LRScheduler


def data(n=64, seed=0):
    return regression_data(n, seed)


class LRAt(pyluz.Callback):
    """Records the lr of each optimizer at a breakpoint."""

    def __init__(self, event="on_epoch_begin"):
        self.seen = []
        setattr(self, event, self._record)

    def _record(self):
        self.seen.append({k: o.param_groups[0]["lr"] for k, o in self.ctx.optimizers.items()})


def linear_module(**kw):
    return (
        pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=3, out_features=1)
        .set_opt_hparams(lr=0.1, **kw)
    )


def test_step_lr_per_epoch_matches_hand_computation():
    rec = LRAt("on_epoch_begin")
    sched = LRScheduler(StepLR, step_size=2, gamma=0.5)
    linear_module().fit(data(), epochs=6, callbacks=[sched, rec], verbose=False)
    expected = [0.1 * 0.5 ** ((epoch - 1) // 2) for epoch in range(1, 7)]
    assert [s["opt"] for s in rec.seen] == pytest.approx(expected, rel=1e-12)
    assert sched.state_dict()["last_epoch"] == 6


def test_step_per_batch_with_call_on():
    rec = LRAt("on_train_batch_begin")
    sched = LRScheduler(StepLR, call_on="on_train_batch_end", step_size=1, gamma=0.9)
    linear_module().fit(
        data(64), epochs=2, callbacks=[sched, rec], verbose=False, dataloader_options={"batch_size": 16}
    )
    assert len(rec.seen) == 8
    assert [s["opt"] for s in rec.seen] == pytest.approx([0.1 * 0.9**i for i in range(8)], rel=1e-12)


def test_unknown_call_on_is_an_error_at_construction():
    with pytest.raises(ValueError, match="`call_on`.*got .on_batch_end.*Did you mean 'on_train_batch_end'"):
        LRScheduler(StepLR, call_on="on_batch_end", step_size=1)
    with pytest.raises(TypeError, match="`scheduler`"):
        LRScheduler(StepLR(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), step_size=1))


class Scripted:
    """A loss whose value per epoch and phase is scripted (zero gradient: nothing learns)."""

    def __init__(self, train, valid):
        self.values = {"train": train, "valid": valid}
        self.ctx = None

    def __call__(self, pred, target):
        phase = "train" if self.ctx.training else "valid"
        return (pred * 0).sum() + self.values[phase][self.ctx.epoch - 1]


class GiveCtx(pyluz.Callback):
    def __init__(self, loss):
        self.loss = loss

    def on_fit_begin(self):
        self.loss.ctx = self.ctx


def plateau_lrs(values, lr=0.1, factor=0.1, patience=1):
    """ReduceLROnPlateau(mode='min', threshold=0) by hand: the lr in force at the start of each epoch."""
    best, bad, out = float("inf"), 0, []
    for v in values:
        out.append(lr)
        if v < best:
            best, bad = v, 0
        else:
            bad += 1
        if bad > patience:
            lr, bad = lr * factor, 0
    return out


@pytest.mark.parametrize("with_valid", [True, False])
def test_reduce_on_plateau_gets_the_epoch_loss(with_valid):
    train = [5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.25]  # always improving
    valid = [1.0, 0.9, 0.95, 0.95, 0.95, 0.5, 0.6]  # plateaus
    loss = Scripted(train, valid)
    rec = LRAt("on_epoch_begin")
    sched = LRScheduler(ReduceLROnPlateau, patience=1, factor=0.1, threshold=0)
    x, y = data(64)
    model = (
        pyluz.setup(nn.Linear, loss=loss, optimizer=torch.optim.SGD)
        .set_hparams(in_features=3, out_features=1)
        .set_opt_hparams(lr=0.1)
    )
    model.fit(
        (x, y),
        epochs=7,
        valid_data=data(32, seed=1) if with_valid else None,
        callbacks=[GiveCtx(loss), sched, rec],
        verbose=False,
    )
    expected = plateau_lrs(valid if with_valid else train)
    assert [s["opt"] for s in rec.seen] == pytest.approx(expected, rel=1e-12)
    if with_valid:
        assert expected[-1] < 0.1  # the scripted plateau did reduce the lr


def two_opt_module():
    return pyluz.setup(TwoOpt, loss=nn.MSELoss()).set_opt_hparams(lr=0.1)


def test_opt_name_schedules_only_that_optimizer():
    rec = LRAt("on_epoch_end")
    disc = LRScheduler(StepLR, opt_name="disc", step_size=1, gamma=0.5)
    gen = LRScheduler(torch.optim.lr_scheduler.ExponentialLR, opt_name="gen", gamma=0.9)
    two_opt_module().fit(data(), epochs=3, callbacks=[disc, gen, rec], verbose=False)
    assert [s["disc"] for s in rec.seen] == pytest.approx([0.05, 0.025, 0.0125], rel=1e-12)
    assert [s["gen"] for s in rec.seen] == pytest.approx([0.09, 0.081, 0.0729], rel=1e-12)


def test_plateau_with_several_optimizers_uses_its_optimizers_loss():
    # Per-optimizer losses differ because the forward is re-run after the first optimizer stepped.
    sched = LRScheduler(ReduceLROnPlateau, opt_name="disc", patience=0)
    fitted = two_opt_module().fit(data(), epochs=2, callbacks=[sched], verbose=False)
    assert isinstance(fitted.records["metrics"]["train"][0]["loss"], dict)
    assert sched.scheduler.best == pytest.approx(min(e["loss"]["disc"] for e in fitted.records["metrics"]["train"]))


def test_opt_name_errors():
    with pytest.raises(pyluz.CallbackError, match="several optimizers.*'gen', 'disc'.*opt_name"):
        two_opt_module().fit(data(), epochs=1, callbacks=[LRScheduler(StepLR, step_size=1)], verbose=False)
    with pytest.raises(pyluz.CallbackError, match='LRScheduler: `opt_name` must be one of "gen", "disc", got \'dis\''):
        two_opt_module().fit(
            data(), epochs=1, callbacks=[LRScheduler(StepLR, opt_name="dis", step_size=1)], verbose=False
        )


def test_state_dict_round_trip_and_restore_before_build():
    sched = LRScheduler(StepLR, step_size=1, gamma=0.5)
    linear_module().fit(data(), epochs=3, callbacks=[sched], verbose=False)
    state = sched.state_dict()
    fresh = LRScheduler(StepLR, step_size=1, gamma=0.5)
    fresh.load_state_dict(state)  # before fit: kept until the scheduler is built
    assert fresh.state_dict() == state
    rec = LRAt("on_fit_end")
    linear_module().fit(data(), epochs=1, callbacks=[fresh, rec], verbose=False)
    assert fresh.scheduler.last_epoch == 4


class CrashAt(pyluz.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self):
        if self.ctx.epoch == self.epoch:
            raise RuntimeError("crash")


@pytest.mark.parametrize(
    "scheduler, kwargs",
    [
        (torch.optim.lr_scheduler.MultiStepLR, dict(milestones=[4], gamma=0.1)),
        (ReduceLROnPlateau, dict(patience=0, factor=0.5)),
    ],
)
def test_auto_resume_restores_the_scheduler(tmp_path, scheduler, kwargs):
    def run(extra, state="state.pt"):
        rec = LRAt("on_epoch_end")
        torch.manual_seed(0)
        fitted = linear_module(momentum=0.9).fit(
            data(),
            epochs=5,
            valid_data=data(16, 1),
            verbose=False,
            callbacks=[LRScheduler(scheduler, **kwargs), rec, *extra, pyluz.callbacks.AutoResume(tmp_path / state)],
        )
        return fitted, rec.seen

    ref, ref_lrs = run([], "ref.pt")
    with pytest.raises(pyluz.CallbackError, match="crash"):
        run([CrashAt(3)])
    resumed, lrs = run([])
    assert [s["opt"] for s in lrs] == [s["opt"] for s in ref_lrs[2:]]  # epochs 3..5 ran again
    for p, q in zip(resumed.model.parameters(), ref.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_only_the_call_on_breakpoint_is_hooked_without_a_reference_cycle():
    from pyluz.callbacks.base import HookTable

    cb = LRScheduler(StepLR, call_on="on_train_batch_end", step_size=1)
    table = HookTable([cb]).table
    assert [name for name, hooks in table.items() if hooks] == ["on_fit_begin", "on_train_batch_end"]
    assert table["on_train_batch_end"][0][1] == cb._step
    assert not any(callable(v) and getattr(v, "__self__", None) is cb for v in vars(cb).values())
    at_fit_begin = HookTable([LRScheduler(StepLR, call_on="on_fit_begin", step_size=1)]).table
    assert [name for name, hooks in at_fit_begin.items() if hooks] == ["on_fit_begin"]  # builds, then steps


def test_per_batch_scheduler_steps_with_the_optimizer_under_gradient_accumulation():
    from torch.optim.lr_scheduler import OneCycleLR
    from torch.utils.data import DataLoader, TensorDataset

    x, y = data(40)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)  # 10 batches: groups of 4, 4, 2 -> 3 steps an epoch
    epochs, opt_steps = 3, 9
    used = LRAt("on_train_batch_before_step")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when a scheduler steps before its optimizer
        fitted = linear_module().fit(
            loader,
            epochs=epochs,
            verbose=False,
            callbacks=[
                pyluz.callbacks.GradientAccumulation(steps=4),
                used,
                LRScheduler(OneCycleLR, call_on="on_train_batch_end", max_lr=0.5, total_steps=opt_steps),
            ],
        )

    # The same training by hand: one OneCycleLR step per optimizer step.
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = OneCycleLR(opt, max_lr=0.5, total_steps=opt_steps)
    lrs = []
    for _ in range(epochs):
        batches = list(loader)
        for start in range(0, len(batches), 4):
            group = batches[start : start + 4]
            for xb, yb in group:
                (nn.functional.mse_loss(model(xb), yb) / len(group)).backward()
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            opt.zero_grad()
            sched.step()
    held = [s["opt"] for s in used.seen]  # before_step runs for every batch; the lr changes only after a step
    assert len(held) == epochs * 10
    assert [held[e * 10 + b] for e in range(epochs) for b in (3, 7, 9)] == pytest.approx(lrs, rel=1e-12)
    for got, want in zip(fitted.model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
