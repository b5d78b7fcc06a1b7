"""setup / hparams: validation errors, immutability, module kinds."""

import pytest
import torch
from torch import nn

import pyluz
from helpers import Net


def test_set_hparams_returns_new_immutable_modules():
    base = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
    a = base.set_hparams(hidden=3)
    b = a.set_opt_hparams(lr=0.5)
    assert base.hparams == {} and a.hparams == {"hidden": 3} and a.opt_hparams == {}
    assert b.hparams == {"hidden": 3} and b.opt_hparams == {"lr": 0.5}
    assert pyluz.set_opt_hparams(pyluz.set_hparams(base, hidden=5), lr=1.0).hparams == {"hidden": 5}


def test_hparams_reach_module_and_optimizer(xy):
    seen = {}

    class Grab(pyluz.Callback):
        def on_fit_begin(self):
            seen["hidden"] = self.ctx.model.body[0].out_features
            seen["lr"] = self.ctx.opt.param_groups[0]["lr"]
            seen["names"] = list(self.ctx.optimizers)

    f = pyluz.fit(
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_hparams(hidden=5)
        .set_opt_hparams(lr=0.25),
        xy,
        epochs=1,
        verbose=False,
        callbacks=[Grab()],
    )
    assert seen == {"hidden": 5, "lr": 0.25, "names": ["opt"]}
    assert f.hparams == {"hidden": 5} and f.opt_hparams == {"lr": 0.25}


def test_module_instance_is_accepted_and_hparams_rejected(xy):
    net = Net()
    f = (
        pyluz.setup(net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=1, verbose=False)
    )
    assert f.model is net
    with pytest.raises(ValueError, match="already built"):
        pyluz.setup(net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_hparams(hidden=3)


def test_factory_module(xy):
    f = (
        pyluz.setup(
            lambda width: nn.Sequential(nn.Linear(4, width), nn.Linear(width, 2)),
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.SGD,
        )
        .set_hparams(width=3)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=1, verbose=False)
    )
    assert f.model[0].out_features == 3


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"loss": None, "optimizer": torch.optim.SGD}, ValueError, "No loss function"),
        ({"loss": nn.MSELoss()}, ValueError, "No optimizer"),
        ({"loss": nn.MSELoss, "optimizer": torch.optim.SGD}, TypeError, "pass an instance"),
        ({"loss": 3, "optimizer": torch.optim.SGD}, TypeError, "`loss` must be"),
        ({"loss": nn.MSELoss(), "optimizer": "adam"}, TypeError, "`optimizer` must be"),
        ({"loss": nn.MSELoss(), "optimizer": torch.optim.SGD, "backward": 1}, TypeError, "`backward`"),
        (
            {"loss": nn.MSELoss(), "optimizer": torch.optim.SGD, "metrics": pyluz.metrics.Accuracy},
            TypeError,
            "instantiate",
        ),
    ],
)
def test_setup_validates_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        pyluz.setup(Net, **kwargs)


def test_setup_rejects_non_modules():
    with pytest.raises(TypeError, match="`module`"):
        pyluz.setup(int, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    with pytest.raises(TypeError, match="`module`"):
        pyluz.setup(3, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    with pytest.raises(TypeError, match="setup"):
        pyluz.fit(Net, torch.zeros(3))


def test_optimizer_instance_is_rejected():
    opt = torch.optim.SGD(Net().parameters(), lr=0.1)
    with pytest.raises(TypeError, match="not an optimizer instance"):
        pyluz.setup(Net, loss=nn.MSELoss(), optimizer=opt)


def test_bad_set_optimizers_result(xy):
    class Bad(Net):
        def set_optimizers(self):
            return [torch.optim.SGD(self.parameters(), lr=0.1)]

    with pytest.raises(TypeError, match="dict of named optimizers"):
        pyluz.setup(Bad, loss=nn.CrossEntropyLoss()).fit(xy, epochs=1, verbose=False)


def test_fit_argument_validation(xy):
    m = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    with pytest.raises(TypeError, match="`verbose`"):
        m.fit(xy, verbose="yes")
    with pytest.raises(TypeError, match="`accelerator`"):
        m.fit(xy, accelerator="cuda", verbose=False)
    with pytest.raises(TypeError, match="`callbacks`"):
        m.fit(xy, callbacks=3, verbose=False)
    with pytest.raises(TypeError, match="`dataloader_options`"):
        m.fit(xy, dataloader_options=[1], verbose=False)


def test_a_module_without_forward_gets_luz_identity_forward():
    # luz's setup() gives such modules (GAN containers with a custom step) an identity forward
    class Box(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def step(self):
            ctx = self.ctx
            if ctx.training:
                loss = nn.functional.mse_loss(self.fc(ctx.input), ctx.target)
                ctx.loss = {"opt": loss.detach()}
                loss.backward()
                ctx.opt.step()
                ctx.opt.zero_grad()

        def set_optimizers(self, lr=0.1):
            return torch.optim.SGD(self.parameters(), lr=lr)

    fitted = pyluz.setup(Box).fit((torch.randn(64, 2), torch.randn(64, 1)), epochs=1, verbose=False)
    x = torch.randn(3, 2)
    assert torch.equal(fitted.predict(x), x)
