"""Models defined in R are saved with a program that runs their forward pass without R,
and a program is only loaded when the caller trusts the file.

"R-defined" modules are emulated by plain modules flagged `__pyluz_r__ = True` whose class is
defined inside a function, so it can't be imported by a process that loads the file.
"""

import collections
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import warnings
import zipfile
from typing import Tuple

import numpy as np
import pytest
import torch
from torch import nn

import pyluz
from helpers import classification_data
from pyluz import export as E
from pyluz import files as F
from pyluz import model_file as M
from pyluz import serialization as S


def r_like(kind="mlp"):
    """A class flagged as R-defined, not importable (defined in a function)."""

    class RNet(nn.Module):
        __pyluz_r__ = True

        def __init__(self, hidden=8):
            super().__init__()
            self.fc1 = nn.Linear(4, hidden)
            self.drop = nn.Dropout(0.5)  # captured in eval mode: no effect on predictions
            self.fc2 = nn.Linear(hidden, 3)

        def forward(self, x):
            out = self.fc2(self.drop(torch.relu(self.fc1(x))))
            if kind == "fixed_batch" and x.shape[0] == 2:  # export specialises the batch size to 2
                out = out + 0.0
            if kind == "data_dependent" and x.abs().sum() >= 0:  # torch.export can't, torch.jit.trace can
                out = out * 2
            if kind == "numpy":  # leaves torch: no program reproduces it
                out = out + torch.from_numpy(x.detach().numpy().copy()).sum(1, keepdim=True)
            return out

    return RNet


def data(n=50, seed=0):
    return classification_data(n, seed, label=lambda x: (x[:, 0] > x[:, 1]).long() + (x[:, 2] > 0).long())


def train(kind="mlp"):
    """A fit as the R front end runs it: with KeepExampleInput, whose rows go to `example_input`."""
    torch.manual_seed(0)
    keep = pyluz.callbacks.KeepExampleInput()
    fitted = (
        pyluz.setup(r_like(kind), loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
        .set_hparams(hidden=6)
        .fit(data(), epochs=2, verbose=False, callbacks=[keep], dataloader_options={"batch_size": 16})
    )
    fitted.example_input = keep.example
    return fitted


def test_a_plain_fit_keeps_no_example_input():
    torch.manual_seed(0)
    fitted = pyluz.setup(nn.Linear(4, 3), loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).fit(
        data(), epochs=1, verbose=False
    )
    assert fitted.example_input is None


def test_keep_example_input_keeps_a_small_example_input():
    fitted = train()
    ex = fitted.example_input
    assert ex.shape == (2, 4) and ex.device.type == "cpu" and not ex.requires_grad
    x, _ = data()
    assert all((x == row).all(1).any() for row in ex)  # rows of the (shuffled) last batch

    assert E.example_rows(torch.arange(3.0).reshape(1, 3)).tolist() == [[0, 1, 2], [0, 1, 2]]  # repeated to 2 rows
    nested = E.example_rows({"x": torch.ones(5, 2), "meta": (torch.zeros(5), 3, None)})
    assert nested["x"].shape == (2, 2) and nested["meta"][0].shape == (2,) and nested["meta"][1:] == (3, None)
    assert E.example_rows(torch.zeros(0, 4)) is None
    assert E.example_rows([torch.ones(3), object()]) is None
    Pair = collections.namedtuple("Pair", "x y")
    assert E.example_rows(Pair(torch.ones(3), torch.ones(3))) is None  # a program's input has plain containers


def load_in_subprocess(path, x, tmp_path, trust=True):
    """pyluz.load + predict in a fresh Python (no R, no access to the test's classes)."""
    np.save(tmp_path / "x.npy", x.numpy())
    script = textwrap.dedent(f"""
        import sys, numpy as np, torch, pyluz
        fitted = pyluz.load({str(path)!r}, trust_program={trust})
        preds = fitted.predict(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r})), verbose=False)
        np.save({str(tmp_path / 'preds.npy')!r}, preds.numpy())
        print(type(fitted.model).__name__, "rpy2" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return np.load(tmp_path / "preds.npy"), out.stdout.split()


@pytest.mark.parametrize(
    "kind, fmt, batch",
    [("mlp", "torch.export", "dynamic"), ("fixed_batch", "torch.export", 1), ("data_dependent", "torch.jit", 1)],
)
def test_r_defined_model_predicts_in_python_without_its_class(tmp_path, kind, fmt, batch, capfd):
    fitted = train(kind)
    path = tmp_path / "model.safetensors"
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted.save(path)
    assert capfd.readouterr() == ("", "")  # no graph dumps, logs or warnings on the console
    assert os.listdir(tmp_path) == ["model.safetensors"]  # one file: the program is inside it
    meta = S.read_metadata(path)
    program = meta["program"]
    assert (meta["defined_in"], meta["class_name"]) == ("R", "RNet")
    assert (program["key"], program["format"], program["batch"]) == (E.PROGRAM_KEY, fmt, batch)
    stored = F.read_safetensors(str(path))[0][E.PROGRAM_KEY]
    assert stored.dtype == torch.uint8 and program["bytes"] == stored.numel()
    assert program["sha256"] == hashlib.sha256(stored.numpy().tobytes()).hexdigest()
    # the weights loaders skip the program
    other = r_like(kind)(hidden=6)
    pyluz.load_model_weights(other, path)
    torch.testing.assert_close(other.state_dict(), fitted.model.state_dict())

    x = data(37, seed=3)[0]
    expected = fitted.predict(x, verbose=False).numpy()
    preds, (model_type, has_rpy2) = load_in_subprocess(path, x, tmp_path)
    assert model_type == "ProgramModule" and has_rpy2 == "False"
    np.testing.assert_allclose(preds, expected, rtol=0, atol=1e-6)
    # in this process too, with the records
    again = pyluz.load(path, trust_program=True)
    torch.testing.assert_close(again.predict(x, verbose=False), torch.from_numpy(expected), rtol=0, atol=1e-6)
    assert again.records == fitted.records and again.hparams == {"hidden": 6}
    assert "RNet as a" in repr(again.model)
    with pytest.raises(TypeError, match="loaded from a program"):
        again.save(tmp_path / "again.safetensors")


def test_loading_needs_trust_program_or_module(tmp_path):
    fitted = train()
    path = tmp_path / "model.safetensors"
    fitted.save(path)
    with pytest.raises(ValueError, match="(?s)defined in R .*module=.*trust_program=True.*files you trust"):
        pyluz.load(path)
    with pytest.raises(TypeError, match="trust_program"):
        pyluz.load(path, trust_program="yes")
    # module= wins: the real class, with the saved weights
    again = pyluz.load(path, module=fitted.luz_module.module)
    torch.testing.assert_close(again.predict(data()[0], verbose=False), fitted.predict(data()[0], verbose=False))
    assert isinstance(again.model, fitted.luz_module.module)


def test_models_that_cannot_be_captured_are_saved_without_a_program_silently(tmp_path, capfd):
    fitted = train("numpy")
    path = tmp_path / "model.safetensors"
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted.save(path)
    assert capfd.readouterr() == ("", "")
    meta = S.read_metadata(path)
    assert meta["program"] is None
    assert "torch.export:" in meta["program_error"] and "other outputs" in meta["program_error"]
    assert E.PROGRAM_KEY not in F.read_safetensors(str(path))[0]
    with pytest.raises(ValueError, match="defined in R.*module="):
        pyluz.load(path, trust_program=True)
    # asked for: the reason, on stdout
    fitted.save(path, verbose=True)
    out = capfd.readouterr().out
    assert "without a program" in out and "other outputs" in out and "could not be exported" in out
    with pytest.raises(TypeError, match="verbose"):
        fitted.save(path, verbose="yes")

    fitted = train()
    fitted.example_input = None  # e.g. a model loaded with module=: no example to trace with
    fitted.save(path)
    assert "no example input" in S.read_metadata(path)["program_error"]
    fitted.example_input = data()[0][:3]
    S.save_fitted(fitted, path, verbose=True)
    assert S.read_metadata(path)["program"]["batch"] == "dynamic"
    assert "with a torch.export program" in capfd.readouterr().out
    assert "program_error" not in S.read_metadata(path)


def test_quiet_keeps_python_and_c_level_output(capfd):
    with E.quiet() as out:
        print("to stdout")
        sys.stderr.write("to stderr\n")
        os.write(2, b"from C\n")
        warnings.warn("a warning", stacklevel=1)
        logging.getLogger("torch.export").warning("a log line")
    assert capfd.readouterr() == ("", "")
    assert all(part in out.text() for part in ("to stdout", "to stderr", "from C", "UserWarning: a warning"))


def test_python_defined_models_get_no_program(tmp_path):
    torch.manual_seed(0)
    fitted = pyluz.setup(nn.Linear(4, 3), loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).fit(
        data(), epochs=1, verbose=False
    )
    fitted.save(tmp_path / "m.safetensors")
    assert "program" not in S.read_metadata(tmp_path / "m.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


# -- security -------------------------------------------------------------------------------------


class MakeDir:
    """Unpickling calls os.mkdir(marker): proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def evil_program(src, dst, marker):
    """A copy of the .pt2 archive `src` whose sample inputs and first weight are malicious pickles."""
    buf = io.BytesIO()
    torch.save(MakeDir(marker), buf)
    with zipfile.ZipFile(src) as z:
        items = {name: z.read(name) for name in z.namelist()}
    config_name = next(k for k in items if k.endswith("model_weights_config.json"))
    config = json.loads(items[config_name])
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True
    items[config_name] = json.dumps(config).encode()
    for name in items:
        if name.endswith("sample_inputs/model.pt") or name.endswith("data/weights/" + first["path_name"]):
            items[name] = buf.getvalue()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for name, content in items.items():
            z.writestr(name, content)
    return dst.read_bytes()


def test_torch_program_loaders_run_code_from_the_file(tmp_path):
    """Why pyluz requires trust_program=True: both torch loaders run what a crafted file holds."""
    ep = torch.export.export(nn.Linear(4, 3), (torch.randn(2, 4),))
    torch.export.save(ep, tmp_path / "ok.pt2")
    evil_program(tmp_path / "ok.pt2", tmp_path / "evil.pt2", tmp_path / "pwned_export")
    with pytest.raises(Exception):  # noqa: B017 - any error: what matters is the marker below
        torch.export.load(tmp_path / "evil.pt2")  # fails, but only after unpickling the payload
    assert (tmp_path / "pwned_export").exists()

    class WritesOnLoad(nn.Module):  # TorchScript __setstate__ runs in torch.jit.load and can write files
        def __init__(self, marker):
            super().__init__()
            self.x = torch.zeros(1)
            self.marker = marker

        def forward(self, t):
            return t

        @torch.jit.export
        def __getstate__(self) -> Tuple[torch.Tensor, bool, str]:
            return (self.x, self.training, self.marker)

        @torch.jit.export
        def __setstate__(self, state: Tuple[torch.Tensor, bool, str]) -> None:
            self.x = state[0]
            self.training = state[1]
            self.marker = state[2]
            torch.ops.aten.save(self.x, self.marker)  # any path, any content

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(WritesOnLoad(str(tmp_path / "pwned_jit"))), tmp_path / "evil.jit.pt")
        assert not (tmp_path / "pwned_jit").exists()
        torch.jit.load(tmp_path / "evil.jit.pt")
    assert (tmp_path / "pwned_jit").exists()


def test_crafted_programs_are_never_loaded_without_trust(tmp_path):
    fitted = train()
    path = tmp_path / "model.safetensors"
    fitted.save(path)
    marker = tmp_path / "pwned"
    tensors, meta = F.read_safetensors(str(path))  # the weights, the program and the raw JSON metadata

    # A crafted program whose size and sha256 the (equally crafted) metadata records.
    (tmp_path / "ok.pt2").write_bytes(tensors[E.PROGRAM_KEY].numpy().tobytes())
    evil = evil_program(tmp_path / "ok.pt2", tmp_path / "evil.pt2", marker)
    evil_tensor = torch.frombuffer(bytearray(evil), dtype=torch.uint8)
    crafted = tmp_path / "crafted.safetensors"
    M.write_safetensors(
        str(crafted),
        {**tensors, E.PROGRAM_KEY: evil_tensor},
        {**meta, "program": {**meta["program"], "bytes": len(evil), "sha256": hashlib.sha256(evil).hexdigest()}},
    )
    with pytest.raises(ValueError, match="trust_program=True"):
        pyluz.load(crafted)
    pyluz.load(crafted, module=fitted.luz_module.module)  # module= never touches the program
    pyluz.load_model_weights(fitted, crafted)
    assert not marker.exists()

    # A program that is not the one recorded is refused even when trusted, before torch reads it.
    M.write_safetensors(str(crafted), {**tensors, E.PROGRAM_KEY: evil_tensor}, meta)
    with pytest.raises(ValueError, match="does not match the size and sha256"):
        pyluz.load(crafted, trust_program=True)
    assert not marker.exists()

    # The metadata names the program's key and nothing else; the bytes must be there, as uint8.
    for bad in (
        {**meta["program"], "key": "fc1.weight"},
        {**meta["program"], "format": "pickle"},
        {**meta["program"], "bytes": "12"},
        "evil.pt2",
        ["evil.pt2"],
    ):
        M.write_safetensors(str(crafted), tensors, {**meta, "program": bad})
        for trust in (False, True):
            with pytest.raises(ValueError, match="not one pyluz writes"):
                pyluz.load(crafted, trust_program=trust)
    for program_tensor in (None, torch.zeros(3), torch.zeros(2, 2, dtype=torch.uint8)):
        parts = {k: v for k, v in tensors.items() if k != E.PROGRAM_KEY}
        if program_tensor is not None:
            parts[E.PROGRAM_KEY] = program_tensor
        M.write_safetensors(str(crafted), parts, meta)
        with pytest.raises(ValueError, match="holds no program bytes"):
            pyluz.load(crafted, trust_program=True)
    assert not marker.exists()


def test_files_of_the_two_file_layout_are_refused_clearly_but_load_with_module(tmp_path):
    fitted = train()
    path = tmp_path / "model.safetensors"
    fitted.save(path)
    tensors, meta = F.read_safetensors(str(path))
    program = tensors.pop(E.PROGRAM_KEY)
    (tmp_path / "old.safetensors.pt2").write_bytes(program.numpy().tobytes())
    old_entry = {"file": "old.safetensors.pt2", "format": "torch.export", "batch": "dynamic", "sha256": "0"}
    old = tmp_path / "old.safetensors"
    M.write_safetensors(str(old), tensors, {**meta, "program": old_entry})
    for trust in (False, True):
        with pytest.raises(ValueError, match="older pyluz that wrote the program to a second file.*module="):
            pyluz.load(old, trust_program=trust)
    again = pyluz.load(old, module=fitted.luz_module.module)
    torch.testing.assert_close(again.predict(data()[0], verbose=False), fitted.predict(data()[0], verbose=False))
