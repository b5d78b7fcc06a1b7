"""Accelerator: device choice, prepare() in a hand-written loop, batch movement."""

import collections

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pyluz
from pyluz.accelerator import DeviceLoader, move_to_device, pick_device


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
