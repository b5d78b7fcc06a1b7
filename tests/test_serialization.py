"""Saving/loading fitted models, weights and checkpoints; loading never runs code."""

import json
import math
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import pyluz
from helpers import classification_data
from pyluz import checkpoints as C
from pyluz import model_file as M
from pyluz import rng
from pyluz import serialization as S


class Net(nn.Module):
    def __init__(self, n_in=4, hidden=8, n_out=2, dropout=0.25, kernel=(1, 1)):
        super().__init__()
        self.kernel = kernel
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))
        self.register_buffer("scale", torch.tensor([2.0]))

    def forward(self, x):
        return self.body(x) * self.scale


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.out = nn.Linear(3, 5, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, idx):
        return self.out(self.emb(idx))


def make_net_factory(hidden=8):
    return Net(hidden=hidden)


def xy(n=64, seed=0):
    return classification_data(n, seed)  # label: x[:, 0] > x[:, 1]


class LogOdd(pyluz.Callback):
    """Logs values JSON lacks (non-finite numbers) next to the metrics."""

    def on_epoch_end(self):
        self.ctx.log("extra", "train", {"nan": math.nan, "inf": math.inf, "epoch": self.ctx.epoch})


def train(module=Net, hparams=None, epochs=2, **fit_kw):
    torch.manual_seed(0)
    m = pyluz.setup(module, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=[pyluz.metrics.Accuracy()])
    if hparams is not None:
        m = m.set_hparams(**hparams)
    m = m.set_opt_hparams(lr=0.01, betas=(0.8, 0.99))
    return m.fit(xy(), epochs=epochs, valid_data=xy(32, 1), verbose=False, **fit_kw)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture
def fitted():
    return train(hparams=dict(hidden=6, kernel=(3, 3)), callbacks=[LogOdd()])


# -- fitted models ------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path, fitted):
    path = tmp_path / "model.safetensors"
    fitted.save(path)
    loaded = S.load(path)
    assert isinstance(loaded, pyluz.Fitted)
    assert type(loaded.model) is Net
    assert_same_weights(loaded.model, fitted.model)
    assert loaded.hparams == {"hidden": 6, "kernel": (3, 3)}
    assert loaded.model.kernel == (3, 3)
    assert loaded.opt_hparams == {"lr": 0.01, "betas": (0.8, 0.99)}
    assert loaded.opt_names == ["opt"]
    # Records equal, including non-finite values (NaN != NaN, so compare the JSON-free parts by hand).
    assert loaded.records["metrics"] == fitted.records["metrics"]
    assert loaded.records["profile"] == fitted.records["profile"]
    extra = loaded.records["extra"]["train"]
    assert [e["epoch"] for e in extra] == [1, 2]
    assert math.isnan(extra[0]["nan"]) and extra[0]["inf"] == math.inf
    x = xy(20, 5)[0]
    assert torch.equal(loaded.predict(x), fitted.predict(x))
    assert loaded.get_metrics().equals(fitted.get_metrics())


def test_file_is_plain_safetensors_with_json_metadata(tmp_path, fitted):
    path = str(tmp_path / "model.safetensors")
    fitted.save(path)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert keys == set(fitted.model.state_dict())
    info = json.loads(meta["pyluz"])
    assert info["format"] == "pyluz-fitted" and info["format_version"] == 1
    assert info["module"] == f"{Net.__module__}:Net" and info["module_kind"] == "class"
    assert info["hparams"] == {"hidden": 6, "kernel": {"$tuple": [3, 3]}}
    assert info["records"]["extra"]["train"][0]["nan"] == {"$float": "nan"}
    assert S.read_metadata(path)["hparams"] == {"hidden": 6, "kernel": (3, 3)}


def test_load_a_torch_class_by_its_import_path(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(32, 3)
    fitted = (
        pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=3, out_features=2)
        .set_opt_hparams(lr=0.1)
        .fit((x, torch.randn(32, 2)), epochs=1, verbose=False)
    )
    fitted.save(tmp_path / "lin.safetensors")
    loaded = S.load(tmp_path / "lin.safetensors", loss=nn.MSELoss())
    assert isinstance(loaded.model, nn.Linear) and loaded.model.in_features == 3
    assert torch.equal(loaded.predict(x), fitted.predict(x))
    ev = loaded.evaluate((x, torch.zeros(32, 2)))
    assert ev["loss"] == pytest.approx(torch.mean(fitted.predict(x) ** 2).item(), rel=1e-5)


def test_class_that_cannot_be_imported_needs_module(tmp_path):
    class Local(Net):
        pass

    fitted = train(Local)
    path = tmp_path / "local.safetensors"
    fitted.save(path)
    with pytest.raises(ImportError, match=r"pass it explicitly: pyluz.load\(.*module="):
        S.load(path)
    by_class = S.load(path, module=Local)
    assert type(by_class.model) is Local
    assert_same_weights(by_class.model, fitted.model)
    instance = Local()
    by_instance = S.load(path, module=instance)
    assert by_instance.model is instance
    assert_same_weights(instance, fitted.model)


def test_factories_are_not_called_from_file_names(tmp_path):
    fitted = train(make_net_factory, hparams=dict(hidden=5))
    path = tmp_path / "factory.safetensors"
    fitted.save(path)
    with pytest.raises(ValueError, match="factory .*make_net_factory.* does not call on its own"):
        S.load(path)
    loaded = S.load(path, module=make_net_factory)
    assert_same_weights(loaded.model, fitted.model)


def test_setup_with_a_built_instance_round_trips(tmp_path):
    fitted = train(Net())
    fitted.save(tmp_path / "inst.safetensors")
    assert_same_weights(S.load(tmp_path / "inst.safetensors").model, fitted.model)


def test_hparams_that_json_cannot_hold_need_an_instance(tmp_path):
    fitted = train(make_net_factory, hparams=dict(hidden=5))
    fitted.luz_module.hparams["hidden"] = {1, 2}  # a set: not JSON
    with pytest.warns(UserWarning, match=r"`hparams`\['hidden'\] holds a set"):
        fitted.save(tmp_path / "odd.safetensors")
    with pytest.raises(ValueError, match=r"hparams \['hidden'\].*pass `module=` an already built instance"):
        S.load(tmp_path / "odd.safetensors", module=make_net_factory)
    loaded = S.load(tmp_path / "odd.safetensors", module=Net(hidden=5))
    assert_same_weights(loaded.model, fitted.model)


def test_tied_weights(tmp_path):
    torch.manual_seed(0)
    model = Tied()
    S.save_model_weights(model, tmp_path / "tied.safetensors")
    other = Tied()
    S.load_model_weights(other, tmp_path / "tied.safetensors")
    assert_same_weights(other, model)
    assert other.out.weight is other.emb.weight


def test_argument_errors(tmp_path, fitted):
    with pytest.raises(TypeError, match="`fitted` must be a pyluz.Fitted"):
        S.save_fitted(fitted.model, tmp_path / "x")
    with pytest.raises(TypeError, match="`path` must be a file path"):
        fitted.save(3)
    with pytest.raises(FileNotFoundError, match="`path`: no file at"):
        S.load(tmp_path / "missing.safetensors")
    with pytest.raises(TypeError, match="`obj` must be a pyluz.Fitted or a torch.nn.Module, got str"):
        S.save_model_weights("model", tmp_path / "w")
    S.save_model_weights(fitted, tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="not a fitted model file"):
        S.load(tmp_path / "w.safetensors")
    fitted.save(tmp_path / "m.safetensors")
    with pytest.raises(TypeError, match="`module` must be an nn.Module class"):
        S.load(tmp_path / "m.safetensors", module=3)


# -- weights only -------------------------------------------------------------------------------


def test_model_weights_round_trip_in_place(tmp_path, fitted):
    path = tmp_path / "weights.safetensors"
    S.save_model_weights(fitted, path)
    torch.manual_seed(1)
    fresh = Net(hidden=6)
    assert S.load_model_weights(fresh, path) is None
    assert_same_weights(fresh, fitted.model)
    other = train(hparams=dict(hidden=6), epochs=1)
    S.load_model_weights(other, path)
    assert_same_weights(other.model, fitted.model)
    # A fitted model file and a torch state dict work too.
    fitted.save(tmp_path / "full.safetensors")
    S.load_model_weights(Net(hidden=6), tmp_path / "full.safetensors")
    torch.save(fitted.model.state_dict(), tmp_path / "sd.pt")
    again = Net(hidden=6)
    S.load_model_weights(again, tmp_path / "sd.pt")
    assert_same_weights(again, fitted.model)


def test_weights_that_do_not_fit(tmp_path, fitted):
    S.save_model_weights(fitted, tmp_path / "w.safetensors")
    with pytest.raises(RuntimeError, match="don't fit this model"):
        S.load_model_weights(Net(hidden=7), tmp_path / "w.safetensors")


# -- checkpoints --------------------------------------------------------------------------------


class Stateful(pyluz.Callback):
    def __init__(self):
        self.count = 0
        self.loaded = None

    def on_epoch_end(self):
        self.count += 1

    def state_dict(self):
        return {"count": self.count, "arr": np.arange(3), "x": np.float64(1.5)}

    def load_state_dict(self, state):
        self.loaded = state


class Snapshot(pyluz.Callback):
    """Writes a checkpoint at the end of the last epoch and keeps the ctx's live states to compare."""

    def __init__(self, path):
        self.path = path

    def on_epoch_end(self):
        if self.ctx.epoch == self.ctx.max_epochs:
            C.write_checkpoint(self.ctx, self.path)
            self.opt_state = self.ctx.opt.state_dict()
            self.rng = torch.get_rng_state()


def test_checkpoint_contents_are_weights_only_data(tmp_path):
    path = str(tmp_path / "ckpt" / "state.pt")
    snap = Snapshot(path)
    fitted = train(callbacks=[Stateful(), snap])
    state = torch.load(path, weights_only=True)
    assert state["format"] == "pyluz-checkpoint" and state["epoch"] == 2
    assert_same_weights(fitted.model, _model_from(state["model"]))
    assert set(state["optimizers"]) == {"opt"}
    assert torch.equal(state["optimizers"]["opt"]["state"][0]["exp_avg"], snap.opt_state["state"][0]["exp_avg"])
    names = [c["name"] for c in state["callbacks"]]
    assert names[:5] == ["Profile", "TrainValid", "MetricsCallback", "Progress", "Interrupt"]
    stateful = state["callbacks"][names.index("Stateful")]["state"]
    assert stateful["count"] == 2 and torch.equal(stateful["arr"], torch.arange(3)) and stateful["x"] == 1.5
    assert state["records"]["metrics"] == fitted.records["metrics"]
    assert torch.equal(state["rng"]["torch"], snap.rng)
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert os.listdir(os.path.dirname(path)) == ["state.pt"]  # no temp file left


def _model_from(sd):
    m = Net()
    m.load_state_dict(sd)
    return m


def test_unsaveable_callback_state_is_reported(tmp_path):
    class Bad(pyluz.Callback):
        def state_dict(self):
            return {"fn": lambda: 1}

    with pytest.raises(pyluz.CallbackError, match=r"state_dict\(\) of callback #\d \(Bad\)\['fn'\] holds a function"):
        train(callbacks=[Bad(), Snapshot(str(tmp_path / "s.pt"))])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "state.pt")
    train(epochs=1, callbacks=[Snapshot(path)])
    before = open(path, "rb").read()

    real_save = torch.save

    def crash(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(pyluz.CallbackError, match="disk full"):
        train(epochs=1, callbacks=[Snapshot(path)])
    monkeypatch.setattr(torch, "save", real_save)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["state.pt"]


def test_load_checkpoint_into_fitted(tmp_path):
    path = str(tmp_path / "s.pt")
    first = train(callbacks=[Snapshot(path)])
    other = train(epochs=1)
    C.load_checkpoint(other, path)
    assert_same_weights(other.model, first.model)
    assert len(other.records["metrics"]["train"]) == 1
    C.load_checkpoint(other, path, restore_records=True)
    assert other.records["metrics"] == first.records["metrics"]
    model = Net()
    C.load_checkpoint(model, path)
    assert_same_weights(model, first.model)
    with pytest.raises(ValueError, match="`restore_optimizer_state=True` needs a training context"):
        C.load_checkpoint(other, path, restore_optimizer_state=True)
    with pytest.raises(TypeError, match="`restore_records` must be True or False, got 1"):
        C.load_checkpoint(other, path, restore_records=1)
    with pytest.raises(TypeError, match="`obj` must be a pyluz.Fitted, a pyluz.Context or an nn.Module"):
        C.load_checkpoint("x", path)
    first.save(tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="is a model file"):
        C.load_checkpoint(other, tmp_path / "m.safetensors")


def test_rng_states_round_trip():
    import random

    states = rng.get_rng_states()
    a = (random.random(), np.random.rand(), torch.rand(3), random.gauss(0, 1), np.random.randn())
    rng.set_rng_states(states)
    b = (random.random(), np.random.rand(), torch.rand(3), random.gauss(0, 1), np.random.randn())
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2]) and a[3] == b[3] and a[4] == b[4]


def test_json_helpers():
    value = {"a": (1, 2.5, [math.inf, -math.inf]), "b": np.float32(0.5), "c": torch.tensor(3), "d": None}
    enc = M.to_json(value, "v")
    json.dumps(enc, allow_nan=False)
    assert M.from_json(enc) == {"a": (1, 2.5, [math.inf, -math.inf]), "b": 0.5, "c": 3, "d": None}
    with pytest.raises(TypeError, match="v\\['x'\\] holds a object"):
        M.to_json({"x": object()}, "v", strict=True)


# -- security: loading never runs code ------------------------------------------------------------


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def payloads(tmp_path):
    marker = tmp_path / "pwned"
    files = {}
    files["pickle"] = tmp_path / "evil.pkl"
    files["pickle"].write_bytes(pickle.dumps({"model": Evil(marker)}))
    files["torch"] = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "x": Evil(marker)}, files["torch"])
    # Make sure the payload is real: unpickling it does create the marker.
    pickle.loads(pickle.dumps(Evil(tmp_path / "proof")))
    assert (tmp_path / "proof").exists()
    return marker, files


def test_malicious_pickles_are_refused_and_never_run(payloads, fitted, tmp_path):
    marker, files = payloads
    for kind, path in files.items():
        with pytest.raises(S.UnsafeFileError, match="pyluz does not read pickled models|never unpickles"):
            S.load(path)
        with pytest.raises(S.UnsafeFileError, match="never unpickles arbitrary objects"):
            C.load_checkpoint(fitted, path)
        with pytest.raises(S.UnsafeFileError, match="never unpickles arbitrary objects"):
            S.load_model_weights(fitted, path)
        with pytest.raises(pyluz.CallbackError, match="never unpickles"):
            train(epochs=1, callbacks=[pyluz.callbacks.ResumeFromCheckpoint(str(path))])
        with pytest.raises(pyluz.CallbackError, match="never unpickles"):
            train(epochs=1, callbacks=[pyluz.callbacks.AutoResume(str(path))])
        assert not marker.exists(), kind


def test_crafted_metadata_cannot_call_functions(tmp_path):
    marker = tmp_path / "pwned2"
    for target in ("os:system", "builtins:exec", "subprocess:getoutput"):
        meta = {
            "format": "pyluz-fitted",
            "format_version": 1,
            "module": target,
            "module_kind": "class",
            "hparams": {},
            "records": {},
        }
        path = tmp_path / "crafted.safetensors"
        save_file({"w": torch.zeros(1)}, str(path), metadata={"pyluz": json.dumps(meta)})
        with pytest.raises(ValueError, match="does not call on its own"):
            S.load(path)
        # Even with arguments from the file.
        meta["hparams"] = {"cmd": f"touch {marker}"}
        save_file({"w": torch.zeros(1)}, str(path), metadata={"pyluz": json.dumps(meta)})
        with pytest.raises(ValueError, match="does not call on its own"):
            S.load(path)
    assert not marker.exists()


def test_garbage_files(tmp_path, fitted):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01not a model at all")
    with pytest.raises(ValueError):
        S.load(junk)
    with pytest.raises(ValueError, match="neither a safetensors file nor a torch checkpoint"):
        C.load_checkpoint(fitted, junk)


# -- devices --------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_saved_files_load_on_cpu(tmp_path):
    cuda = pyluz.Accelerator()
    fitted = train(accelerator=cuda, callbacks=[Snapshot(str(tmp_path / "s.pt"))])
    assert next(fitted.model.parameters()).is_cuda
    fitted.save(tmp_path / "m.safetensors")
    loaded = S.load(tmp_path / "m.safetensors")
    assert not next(loaded.model.parameters()).is_cuda
    assert_same_weights(loaded.model, fitted.model.cpu())
    state = C.read_checkpoint(tmp_path / "s.pt")
    assert state["model"]["body.0.weight"].device.type == "cpu"
    assert "cuda" in state["rng"]
    model = Net()
    C.load_checkpoint(model, tmp_path / "s.pt")
    assert_same_weights(model, fitted.model.cpu())


def test_checkpoint_written_on_a_gpu_loads_on_cpu(tmp_path, monkeypatch):
    # Make torch.save tag every storage as CUDA, as a checkpoint written on a GPU machine is.
    import torch.serialization as ts

    path = str(tmp_path / "gpu.pt")
    snap = Snapshot(path)
    with monkeypatch.context() as m:
        m.setattr(ts, "location_tag", lambda storage: "cuda:0")
        first = train(callbacks=[snap])
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)  # the file really claims CUDA storages
    model = Net()
    C.load_checkpoint(model, path)
    assert_same_weights(model, first.model)
    assert C.read_checkpoint(path)["model"]["body.0.weight"].device.type == "cpu"


def test_load_and_save_validate_their_arguments(tmp_path):
    fitted = (
        pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=2, out_features=1)
        .set_opt_hparams(lr=0.1)
        .fit((torch.randn(32, 2), torch.randn(32, 1)), epochs=1, verbose=False)
    )
    with pytest.raises(ValueError, match="is a directory"):
        fitted.save(tmp_path)
    path = tmp_path / "m.safetensors"
    fitted.save(path)
    with pytest.raises(TypeError, match="`loss` must be"):
        pyluz.load(path, loss=5)
    with pytest.raises(TypeError, match="instantiate"):
        pyluz.load(path, metrics=[pyluz.metrics.Accuracy])
    with pytest.raises(TypeError, match="`stack`"):
        fitted.predict(torch.randn(4, 2), stack="no")


def test_plain_values_and_the_path_to_a_bad_one():
    from collections import OrderedDict, namedtuple

    Pair = namedtuple("Pair", "a b")
    plain = C.plain
    t = torch.ones(2, requires_grad=True)
    out = plain(
        OrderedDict(a=np.float64(1.5), b=[np.int32(2), (True, "s")], c=np.arange(3), d=Pair(t, None), e=torch.float16),
        "v",
    )
    assert out["a"] == 1.5 and type(out["a"]) is float
    assert out["b"] == [2, (True, "s")] and type(out["b"][0]) is int
    assert torch.equal(out["c"], torch.arange(3)) and type(out["d"]) is tuple
    assert torch.equal(out["d"][0], t) and not out["d"][0].requires_grad and out["e"] is torch.float16
    with pytest.raises(TypeError, match=r"^v\['b'\]\[1\]\[0\] holds a set; checkpoints store only"):
        plain({"a": 1, "b": [2, [{3}]]}, "v")
