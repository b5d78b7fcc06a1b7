"""lr_finder: schedule, recorded losses vs a hand loop, options, several optimizers, plot, suggestion."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import pyluz
from helpers import regression_data
from pyluz.lr_finder import LRFinderResult, lr_finder, smooth_loss


pytestmark = pytest.mark.usefixtures("close_figures")
data = regression_data


class Lin(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(3, 1)
        self.batch_sizes = []

    def forward(self, x):
        self.batch_sizes.append(x.shape[0])
        return self.fc(x)


def test_records_schedule_and_losses_match_a_hand_loop():
    x, y = data(64)
    steps, start, end = 10, 1e-4, 1.0
    res = lr_finder(
        pyluz.setup(Lin, loss=nn.MSELoss(), optimizer=torch.optim.SGD),
        (x, y),
        steps=steps,
        start_lr=start,
        end_lr=end,
        dataloader_options={"batch_size": 16, "shuffle": False},
        verbose=False,
    )
    assert len(res) == steps and len(res.lr) == len(res.loss) == steps
    # luz's sequence: start_lr * m^k, k = 1..steps (the last rate is end_lr)
    assert res.lr == [start * (end / start) ** (k / steps) for k in range(1, steps + 1)]
    assert res.lr[-1] == pytest.approx(end)
    # The same training by hand: batches in order, 4 per epoch, lr set before each batch.
    net = Lin()
    opt = torch.optim.SGD(net.parameters(), lr=start)
    losses = []
    for i in range(steps):
        b = i % 4
        for group in opt.param_groups:
            group["lr"] = res.lr[i]
        loss = nn.functional.mse_loss(net(x[16 * b : 16 * (b + 1)]), y[16 * b : 16 * (b + 1)])
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert res.loss == pytest.approx(losses, rel=1e-5)
    frame = res.to_frame()
    assert list(frame.columns) == ["lr", "loss"] and frame["loss"].tolist() == res.loss


def test_linear_schedule_and_dataloader_options():
    module = pyluz.setup(Lin, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    res = lr_finder(
        module,
        data(40),
        steps=7,
        start_lr=0.01,
        end_lr=0.5,
        log_spaced=False,
        dataloader_options={"batch_size": 8},
        verbose=False,
    )
    assert res.lr == [0.01 + (0.5 - 0.01) * k / 7 for k in range(1, 8)]
    # lr_finder builds its own model: check the batch size it saw through a built module instead.
    net = Lin()
    lr_finder(
        pyluz.setup(net, loss=nn.MSELoss(), optimizer=torch.optim.SGD),
        data(40),
        steps=3,
        dataloader_options={"batch_size": 8},
        verbose=False,
    )
    assert net.batch_sizes == []  # the given (built) module was not trained: a copy was
    seen = []

    class Spy(Lin):
        def forward(self, x):
            seen.append(x.shape[0])
            return self.fc(x)

    lr_finder(
        pyluz.setup(Spy, loss=nn.MSELoss(), optimizer=torch.optim.SGD),
        data(40),
        steps=6,
        dataloader_options={"batch_size": 8},
        verbose=False,
    )
    assert seen == [8] * 6


class TwoOpt(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 1)
        self.b = nn.Linear(3, 1)
        self.opt_args = None

    def forward(self, x):
        return self.a(x) + self.b(x)

    def set_optimizers(self, lr, momentum=0.0):
        self.opt_args = dict(lr=lr, momentum=momentum)
        return {
            "generator": torch.optim.SGD(self.a.parameters(), lr=lr, momentum=momentum),
            "discriminator": torch.optim.SGD(self.b.parameters(), lr=lr),
        }


def test_works_with_any_optimizer_names_and_keeps_other_opt_hparams():
    built = []

    class Spy(TwoOpt):
        def set_optimizers(self, **kw):
            opts = super().set_optimizers(**kw)
            built.append((self.opt_args, opts))
            return opts

    module = pyluz.setup(Spy, loss=nn.MSELoss()).set_opt_hparams(lr=3.0, momentum=0.5)
    res = lr_finder(module, data(), steps=5, verbose=False)
    assert built[0][0] == {"lr": 1e-7, "momentum": 0.5}  # lr overridden, momentum kept
    assert len(res) == 5 and list(res.losses) == ["generator", "discriminator"]
    assert res.loss == res.losses["generator"]
    assert list(res.to_frame().columns) == ["lr", "loss", "loss_generator", "loss_discriminator"]
    final = {name: opt.param_groups[0]["lr"] for name, opt in built[0][1].items()}
    assert final == {"generator": res.lr[-1], "discriminator": res.lr[-1]}
    assert module.opt_hparams == {"lr": 3.0, "momentum": 0.5}  # the module given is unchanged


def test_plot_and_suggestion(tmp_path):
    lr = list(np.logspace(-6, 0, 200))
    loss = [2.0 - math.tanh(2 * (math.log10(v) + 3)) for v in lr]  # steepest fall at lr = 1e-3
    res = LRFinderResult(lr, loss)
    smoothed = smooth_loss(loss)
    avg, manual = 0.0, []
    for i, v in enumerate(loss, start=1):
        avg = 0.9 * avg + 0.1 * v
        manual.append(avg / (1 - 0.9**i))
    assert smoothed == pytest.approx(manual)
    slope = np.gradient(np.asarray(manual), np.log10(lr))
    assert res.suggested_lr == lr[int(np.argmin(slope))]
    assert abs(math.log10(res.suggested_lr) + 3) < 0.5
    fig = res.plot()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "Learning Rate" and ax.get_ylabel() == "Loss"
    raw, smooth = ax.get_lines()[:2]
    assert raw.get_linestyle() == ":"
    np.testing.assert_allclose(raw.get_ydata(), loss)
    np.testing.assert_allclose(smooth.get_ydata(), manual)
    path = tmp_path / "lr.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Divergence (NaN) at the end is ignored by the suggestion.
    assert LRFinderResult(lr, loss[:150] + [float("nan")] * 50).suggested_lr == res.suggested_lr


def test_plot_of_a_real_run(tmp_path):
    res = lr_finder(
        pyluz.setup(Lin, loss=nn.MSELoss(), optimizer=torch.optim.SGD),
        data(),
        steps=20,
        dataloader_options={"batch_size": 8},
        verbose=False,
    )
    res.plot().savefig(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 1000
    assert "20 steps" in repr(res)


def test_argument_errors():
    module = pyluz.setup(Lin, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    with pytest.raises(TypeError, match="`luz_module` must be the result of setup"):
        lr_finder(Lin, data())
    with pytest.raises(ValueError, match="`steps` must be an integer >= 1, got 0"):
        lr_finder(module, data(), steps=0)
    with pytest.raises(ValueError, match="`start_lr` must be a positive finite number, got -1"):
        lr_finder(module, data(), start_lr=-1)
    with pytest.raises(ValueError, match="`end_lr` must be greater than `start_lr`"):
        lr_finder(module, data(), start_lr=0.1, end_lr=0.01)
    with pytest.raises(ValueError, match="no training batch"):
        lr_finder(module, data(10), steps=3, verbose=False)  # 10 rows, batch 32, drop_last


def test_the_trained_model_is_freed_without_the_garbage_collector():
    import gc
    import weakref

    refs = []

    class Tracked(Lin):
        def __init__(self):
            super().__init__()
            refs.append(weakref.ref(self))

    module = pyluz.setup(Tracked, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    lr_finder(module, data(), steps=3, verbose=False)  # warm-up: torch's first optimizer imports lazily
    gc.collect()
    gc.disable()
    try:
        lr_finder(module, data(), steps=3, verbose=False)  # stops with StopTraining
        assert refs[-1]() is None
    finally:
        gc.enable()


def _digits():
    sklearn = pytest.importorskip("sklearn.datasets")
    d = sklearn.load_digits()
    return torch.tensor(d.data / 16.0, dtype=torch.float32), torch.tensor(d.target)


def _digits_mlp():
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_a_wide_range_stops_at_divergence_and_suggests_a_rate_that_trains(optimizer):
    x, y = _digits()
    module = pyluz.setup(
        _digits_mlp, loss=nn.CrossEntropyLoss(), optimizer=optimizer, metrics=[pyluz.metrics.Accuracy()]
    )
    torch.manual_seed(0)
    res = lr_finder(module, (x, y), start_lr=1e-5, end_lr=10, verbose=False)
    smoothed = smooth_loss(res.loss)
    lowest = min(smoothed)
    # stopped at the first smoothed loss above 4x the lowest so far, or ran all the steps
    assert len(res) == 100 or smoothed[-1] > 4 * min(smoothed[:-1])
    assert all(s <= 4 * min(smoothed[: i + 1]) for i, s in enumerate(smoothed[:-1]))
    assert res.suggested_lr <= res.lr[smoothed.index(lowest)]  # before the minimum
    torch.manual_seed(0)
    fitted = module.set_opt_hparams(lr=res.suggested_lr).fit((x, y), epochs=10, valid_data=0.2, verbose=False)
    assert fitted.records["metrics"]["valid"][-1]["acc"] >= 0.9
    # the plot leaves the diverged point out
    assert len(res.plot().axes[0].get_lines()[0].get_xdata()) == res.kept()


def test_the_default_range_keeps_the_steepest_descent():
    x, y = _digits()
    module = pyluz.setup(_digits_mlp, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
    torch.manual_seed(0)
    res = lr_finder(module, (x, y), verbose=False)
    assert len(res) == res.kept() == 100  # no divergence up to 0.1
    slope = np.gradient(np.asarray(smooth_loss(res.loss)), np.log10(res.lr))
    assert res.suggested_lr == res.lr[int(np.argmin(slope))]  # what the plain steepest-descent rule picks


def test_diverge_factor_none_runs_every_step_and_bad_factors_are_errors():
    x, y = _digits()
    module = pyluz.setup(_digits_mlp, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
    torch.manual_seed(0)
    res = lr_finder(module, (x, y), start_lr=1e-5, end_lr=10, diverge_factor=None, verbose=False)
    assert len(res) == 100
    with pytest.raises(ValueError, match="`diverge_factor` must be greater than 1"):
        lr_finder(module, (x, y), diverge_factor=0.5)


def test_diverged_tail_is_clipped_from_suggestion_and_plot():
    lr = list(np.logspace(-6, 0, 200))
    loss = [2.0 - math.tanh(2 * (math.log10(v) + 3)) for v in lr]
    exploding = loss[:150] + [loss[149] * 10 ** (k / 5) for k in range(1, 51)]
    res = LRFinderResult(lr, exploding)
    assert res.kept() < 200 and res.smoothed()[res.kept()] > 4 * min(res.smoothed()[: res.kept()])
    assert abs(math.log10(res.suggested_lr) + 3) < 0.5
    raw = res.plot().axes[0].get_lines()[0]
    assert len(raw.get_xdata()) == res.kept()
