"""Accelerator: device choice, prepare() in a hand-written loop, batch movement."""

import collections

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pyluz
from pyluz.accelerator import DeviceLoader, move_to_device, pick_device
from pyluz.data import as_batches


def test_cpu_flag_and_default_device():
    assert pyluz.Accelerator(cpu=True).device == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pyluz.Accelerator().device.type in (expected, "mps")


def test_cuda_selection_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(cuda_index=1) == torch.device("cuda", 1)
    assert pick_device(cpu=True) == torch.device("cpu")


def test_argument_validation():
    with pytest.raises(TypeError, match="`cpu`"):
        pyluz.Accelerator(cpu="yes")
    with pytest.raises(ValueError, match="`cuda_index`"):
        pyluz.Accelerator(cuda_index=-1)
    with pytest.raises(ValueError, match="`strategy`"):
        pyluz.Accelerator(strategy="horovod")


def test_move_to_device_is_recursive_and_keeps_structure():
    Pair = collections.namedtuple("Pair", "a b")
    batch = {"x": [torch.zeros(1), (torch.ones(1), 3)], "p": Pair(torch.zeros(2), "s")}
    moved = move_to_device(batch, torch.device("meta"))
    assert moved["x"][0].device.type == "meta" and moved["x"][1][0].device.type == "meta"
    assert moved["x"][1][1] == 3 and isinstance(moved["p"], Pair) and moved["p"].b == "s"
    assert moved["p"].a.device.type == "meta"


def test_prepare_in_a_hand_written_loop():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dl = DataLoader(TensorDataset(torch.randn(16, 3), torch.randn(16, 1)), batch_size=4)
    acc = pyluz.Accelerator(cpu=True)
    model, opt, dl = acc.prepare(model, opt, dl)
    before = model.weight.detach().clone()
    for x, y in dl:
        assert x.device == acc.device
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert not torch.equal(before, model.weight)


def test_device_loader_moves_batches():
    dl = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    wrapped = DeviceLoader(dl, torch.device("meta"))
    assert len(wrapped) == 2 and all(b[0].device.type == "meta" for b in wrapped)


def test_device_placement_false_moves_neither_model_nor_data():
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    for placement in (True, False):
        acc = pyluz.Accelerator(device_placement=placement)
        acc.device = torch.device("meta")  # stands in for an accelerator device on a CPU-only machine
        model, _, fast, dl = acc.prepare(
            nn.Linear(2, 1), None, as_batches((x, y), None, "valid"), DataLoader(TensorDataset(x, y), batch_size=4)
        )
        expected = "meta" if placement else "cpu"
        assert model.weight.device.type == expected
        assert {b[0].device.type for b in fast} == {b[0].device.type for b in dl} == {expected}


def test_optimizer_state_moves_with_the_model():
    torch.manual_seed(0)
    for placement in (True, False):
        model = nn.Linear(2, 1)
        opt = torch.optim.Adam(model.parameters())
        model(torch.randn(4, 2)).sum().backward()
        opt.step()
        acc = pyluz.Accelerator(device_placement=placement)
        acc.device = torch.device("meta")
        model, opt = acc.prepare(model, opt)
        expected = "meta" if placement else "cpu"
        assert {v.device.type for s in opt.state.values() for k, v in s.items() if k != "step"} == {expected}


def test_prepare_accepts_dicts_and_lists_of_optimizers_and_checks_its_arguments():
    model = nn.Linear(2, 1)
    a, b = torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.Adam(model.parameters())
    acc = pyluz.Accelerator(cpu=True)
    dl = DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)
    _, opts, _ = acc.prepare(model, {"a": a, "b": b}, dl)
    assert list(opts) == ["a", "b"] and opts["a"] is a and opts["b"] is b
    assert acc.prepare(model, [a, b])[1] == [a, b]
    assert acc.prepare(None, None, dl)[2] is dl
    with pytest.raises(TypeError, match=r"`optimizers` .*got DataLoader \(pass None"):
        acc.prepare(model, dl)
    with pytest.raises(TypeError, match="`optimizers` .*got str"):
        acc.prepare(model, {"a": "sgd"})
    with pytest.raises(TypeError, match="`model` must be a torch.nn.Module"):
        acc.prepare("model", a)
    with pytest.raises(TypeError, match=r"`loaders\[1\]` must be a DataLoader"):
        acc.prepare(model, a, dl, 5)
    with pytest.raises(ValueError, match="cuda_index"):
        pyluz.Accelerator(cuda_index=True)


def test_metric_state_follows_the_model_without_device_placement(xy):
    seen = {}

    class Where(pyluz.Callback):
        def on_train_batch_end(self):
            seen["acc"] = self.ctx.metrics["train"][1].correct.device

    acc = pyluz.Accelerator(device_placement=False)
    acc.device = torch.device("meta")  # stands in for a GPU the model was not moved to
    pyluz.setup(
        nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, metrics=[pyluz.metrics.Accuracy()]
    ).set_hparams(in_features=4, out_features=2).set_opt_hparams(lr=0.1).fit(
        xy, epochs=1, verbose=False, accelerator=acc, callbacks=[Where()]
    )
    assert seen["acc"] == torch.device("cpu")
