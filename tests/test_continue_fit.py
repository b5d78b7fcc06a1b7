"""`fitted.fit(...)` continues from the trained weights and the optimizers' state."""

import pytest
import torch
from torch import nn

import pyluz
from helpers import Net


def _module(optimizer):
    return pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=optimizer).set_opt_hparams(lr=0.01)


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.SGD])
def test_two_then_one_epoch_trains_as_three(xy, optimizer):
    if optimizer is torch.optim.SGD:
        optimizer = lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9)  # noqa: E731
    torch.manual_seed(0)
    straight = _module(optimizer).fit(xy, epochs=3, verbose=False)
    torch.manual_seed(0)
    first = _module(optimizer).fit(xy, epochs=2, verbose=False)
    second = first.fit(xy, epochs=1, verbose=False)
    assert second.model is first.model
    for a, b in zip(straight.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert second.records["metrics"]["train"][0]["loss"] == straight.records["metrics"]["train"][2]["loss"]
    assert len(second.history) == 1


def test_continuing_matches_a_hand_loop_with_the_same_adam(xy):
    x, y = xy
    torch.manual_seed(0)
    opts = {"batch_size": 96, "shuffle": False}  # one full batch per epoch: the order is fixed
    first = _module(torch.optim.Adam).fit(xy, epochs=2, verbose=False, dataloader_options=opts)
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    second = first.fit(xy, epochs=1, verbose=False, dataloader_options=opts)
    for a, b in zip(model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_loaded_model_continues_with_fresh_optimizers(xy, tmp_path):
    torch.manual_seed(0)
    fitted = _module(torch.optim.Adam).fit(xy, epochs=1, verbose=False)
    path = fitted.save(str(tmp_path / "m.safetensors"))
    loaded = pyluz.load(path, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
    before = [p.detach().clone() for p in loaded.model.parameters()]
    more = loaded.fit(xy, epochs=1, verbose=False)
    assert loaded.optimizer_states is None and set(more.optimizer_states) == {"opt"}
    assert any(not torch.equal(a, b) for a, b in zip(before, more.model.parameters(), strict=True))
