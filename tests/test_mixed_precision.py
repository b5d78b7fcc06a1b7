"""MixedPrecision: autocast dtypes at each point of the step (bf16 on CPU, fp16 + GradScaler on CUDA)."""

import pytest
import torch
from torch import nn

import pyluz
from helpers import classification_data
from pyluz.callbacks import MixedPrecision

CUDA = torch.cuda.is_available()


def data(n=64, seed=0):
    return classification_data(n, seed)


class Probe(nn.Module):
    """Records the dtype of a matmul inside its forward."""

    def __init__(self, n_opt=1):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.extra = nn.Linear(4, 2)
        self.n_opt = n_opt
        self.seen = []

    def forward(self, x):
        h = x @ self.fc.weight.t()
        self.seen.append(("train" if self.training else "valid", h.dtype))
        return h + self.fc.bias + 0 * self.extra(x)

    def set_optimizers(self, lr=0.1):
        if self.n_opt == 1:
            return torch.optim.SGD(self.parameters(), lr=lr)
        return {"a": torch.optim.SGD(self.fc.parameters(), lr=lr), "b": torch.optim.SGD(self.extra.parameters(), lr=lr)}


class AfterLoss(pyluz.Callback):
    weight = 1  # after MixedPrecision left autocast

    def __init__(self):
        self.seen = []

    def _probe(self, tag):
        dev = self.ctx.device.type
        a = torch.ones(2, 2, device=self.ctx.device)
        self.seen.append((tag, torch.is_autocast_enabled(dev), (a @ a).dtype, self.ctx.loss_grad.dtype))

    def on_train_batch_after_loss(self):
        self._probe("after_loss")

    def on_train_batch_before_step(self):
        self._probe("before_step")


def accelerator():
    return pyluz.Accelerator(cpu=True)


def test_cpu_autocast_is_bfloat16_in_forward_and_float32_after_the_loss():
    probe = AfterLoss()
    fitted = (
        pyluz.setup(Probe, loss=nn.CrossEntropyLoss())
        .set_hparams()
        .fit(
            data(),
            epochs=1,
            valid_data=data(16, 1),
            callbacks=[MixedPrecision(), probe],
            accelerator=accelerator(),
            verbose=False,
            dataloader_options={"batch_size": 16},
        )
    )
    seen = fitted.model.seen
    assert seen == [("train", torch.bfloat16)] * 4 + [("valid", torch.bfloat16)]
    assert (
        probe.seen
        == [("after_loss", False, torch.float32, torch.float32), ("before_step", False, torch.float32, torch.float32)]
        * 4
    )
    assert all(p.dtype == torch.float32 for p in fitted.model.parameters())
    assert not torch.is_autocast_enabled("cpu")


def test_every_optimizers_forward_runs_under_autocast():
    fitted = (
        pyluz.setup(Probe, loss=nn.CrossEntropyLoss())
        .set_hparams(n_opt=2)
        .fit(
            data(32),
            epochs=1,
            callbacks=[MixedPrecision()],
            accelerator=accelerator(),
            verbose=False,
            dataloader_options={"batch_size": 16},
        )
    )
    assert fitted.model.seen == [("train", torch.bfloat16)] * 4


def test_mixed_precision_fit_learns():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    model = pyluz.setup(net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.01)
    fitted = model.fit(data(256), epochs=6, callbacks=[MixedPrecision()], verbose=False)
    losses = [r["loss"] for r in fitted.records["metrics"]["train"]]
    assert losses[-1] < 0.7 * losses[0]


class Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("boom")
        return self.fc(x)


def test_autocast_never_leaks_after_an_error():
    model = pyluz.setup(Boom, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(data(), epochs=1, callbacks=[MixedPrecision()], accelerator=accelerator(), verbose=False)
    assert not torch.is_autocast_enabled("cpu")


def test_scaler_kwargs_are_validated():
    with pytest.raises(TypeError, match="MixedPrecision: `scaler_kwargs`.*init_scale.*got \\['init_scal'\\]"):
        MixedPrecision(init_scal=2.0)
    assert MixedPrecision(init_scale=1024.0, enabled=True).scaler_kwargs == {"init_scale": 1024.0, "enabled": True}


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_float16_with_grad_scaler():
    probe = AfterLoss()

    class Scaler(pyluz.Callback):
        weight = 1

        def on_train_batch_before_backward(self):
            self.scaler = self.ctx.buffers["grad_scaler"]
            self.scale = self.scaler.get_scale()
            self.ratio = (self.ctx.loss_grad / self.ctx.loss["opt"]).item()

    scaler = Scaler()
    torch.manual_seed(0)
    fitted = (
        pyluz.setup(Probe, loss=nn.CrossEntropyLoss())
        .set_hparams()
        .fit(
            data(256),
            epochs=3,
            valid_data=data(32, 1),
            callbacks=[MixedPrecision(init_scale=1024.0), probe, scaler],
            verbose=False,
            dataloader_options={"batch_size": 32},
        )
    )
    assert set(fitted.model.seen) == {("train", torch.float16), ("valid", torch.float16)}
    assert probe.seen[0] == ("after_loss", False, torch.float32, torch.float32)
    assert isinstance(scaler.scaler, torch.amp.GradScaler)
    assert scaler.ratio == pytest.approx(scaler.scale, rel=1e-3)  # the backpropagated loss is scaled
    losses = [r["loss"] for r in fitted.records["metrics"]["train"]]
    assert losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 and p.is_cuda for p in fitted.model.parameters())


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_scaler_skips_steps_with_inf_gradients():
    torch.manual_seed(0)
    model = (
        pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=4, out_features=1)
        .set_opt_hparams(lr=0.1)
    )
    x = torch.randn(32, 4)
    y = torch.full((32, 1), 1e4)
    # A huge initial scale overflows float16 gradients: the first steps are skipped and the scale shrinks.
    cb = MixedPrecision(init_scale=2.0**40)
    fitted = model.fit((x, y), epochs=1, callbacks=[cb], verbose=False, dataloader_options={"batch_size": 8})
    assert cb.scaler.get_scale() < 2.0**40
    assert all(torch.isfinite(p).all() for p in fitted.model.parameters())


class CPUScaled(MixedPrecision):
    """The CUDA recipe (float16 + GradScaler) on the CPU, to run the scaler path without a GPU."""

    def precision(self, device_type):
        return torch.float16, torch.amp.GradScaler("cpu", **self.scaler_kwargs)


class ScaleSeen(pyluz.Callback):
    weight = 1

    def __init__(self):
        self.ratios, self.scales, self.norms = [], [], []

    def on_train_batch_before_backward(self):
        self.scales.append(self.ctx.buffers["grad_scaler"].get_scale())
        self.ratios.append((self.ctx.loss_grad / self.ctx.loss["opt"]).item())

    def on_train_batch_before_step(self):
        grads = [p.grad for p in self.ctx.model.parameters()]
        self.norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())


def test_scaler_path_scales_the_loss_unscales_for_clipping_and_learns():
    seen = ScaleSeen()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    fitted = (
        pyluz.setup(net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
        .set_opt_hparams(lr=0.01)
        .fit(
            data(256),
            epochs=4,
            callbacks=[CPUScaled(init_scale=1024.0), pyluz.callbacks.GradientClip(0.5), seen],
            accelerator=accelerator(),
            verbose=False,
        )
    )
    assert seen.ratios == pytest.approx(seen.scales, rel=1e-2)  # the backpropagated loss is scaled
    assert seen.scales[0] == 1024.0
    assert max(seen.norms) <= 0.5 + 1e-4  # clipped after unscaling
    losses = [r["loss"] for r in fitted.records["metrics"]["train"]]
    assert losses[-1] < losses[0]
    assert not torch.is_autocast_enabled("cpu")


def test_scaler_path_skips_overflowing_steps():
    torch.manual_seed(0)
    net = nn.Linear(4, 1)
    start = [p.detach().clone() for p in net.parameters()]
    x = torch.randn(32, 4)
    y = torch.full((32, 1), 1e3)
    cb = CPUScaled(init_scale=2.0**60, growth_interval=1000)
    fitted = (
        pyluz.setup(net, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=1e-3)
        .fit(
            (x, y),
            epochs=1,
            callbacks=[cb],
            accelerator=accelerator(),
            verbose=False,
            dataloader_options={"batch_size": 8},
        )
    )
    # Every one of the 4 batches overflowed: each step was skipped and the scale halved.
    assert cb.scaler.get_scale() == 2.0**56
    for p, q in zip(start, fitted.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert cb.state_dict()["scaler"]["scale"] == 2.0**56
