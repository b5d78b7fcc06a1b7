"""Crafted files: loading never imports a module a file names, never hangs, never allocates what the file asks.

Each hazard runs in a child process with a timeout where a regression would run code in, end, hang
or exhaust the test process itself, so a failure reads as a failed test instead of a stuck suite.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

import pyluz
from pyluz import checkpoints as C
from pyluz import files as F
from pyluz import model_file as MF
from pyluz import serialization as S

# Only a guard against a hang, never a timing assertion.
HANG_GUARD_S = int(os.environ.get("PYLUZ_TEST_HANG_GUARD_S", "300"))


def run_child(code, tmp_path, env=None, timeout=HANG_GUARD_S):
    """Run `code` in a fresh Python with stdin kept open (a reader of stdin would block); (rc, output)."""
    out = tmp_path / "child.out"
    full_env = dict(os.environ, **(env or {}))
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdin=subprocess.PIPE,
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=str(tmp_path),
            env=full_env,
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"the child hung (killed after {timeout}s); output:\n{out.read_text()}")
        finally:
            proc.stdin.close()
    return rc, out.read_text()


def crafted_model_file(path, module, hparams=None, tensors=None):
    meta = {
        "format": "pyluz-fitted",
        "format_version": 1,
        "module": module,
        "module_kind": "class",
        "hparams": hparams or {},
        "records": {},
    }
    save_file(tensors or {"w": torch.zeros(1)}, str(path), metadata={"pyluz": json.dumps(meta)})
    return path


def list_dag(levels=40):
    b = []
    for _ in range(levels):
        b = [b, b]
    return b


# -- no module named by a file is imported -------------------------------------------------------------


@pytest.mark.parametrize("target", ["antigravity:X", "unittest.__main__:X", "tqdm.__main__:X"])
def test_a_file_naming_a_module_never_imports_it(tmp_path, target):
    # antigravity opens $BROWSER (here: a command that writes a marker), unittest.__main__ exits the
    # process (SystemExit), tqdm.__main__ reads stdin forever.
    path = crafted_model_file(tmp_path / "m.safetensors", target)
    marker = tmp_path / "browser-ran"
    rc, out = run_child(
        f"""
        import sys, pyluz
        try:
            pyluz.load({str(path)!r})
        except ImportError as e:
            print("REFUSED", type(e).__name__, e)
        print("IMPORTED" if {target.partition(':')[0]!r} in sys.modules else "NOT-IMPORTED")
        print("ALIVE")
        """,
        tmp_path,
        env={"BROWSER": f"touch {marker} %s"},
    )
    assert rc == 0, out
    assert "REFUSED NotImportedError" in out and "is not imported in this process" in out, out
    assert "NOT-IMPORTED" in out and "ALIVE" in out, out
    assert not marker.exists()


def test_an_already_imported_class_still_loads(tmp_path):
    # torch.nn is imported: its classes load by name, as before.
    fitted = (
        pyluz.setup(torch.nn.Linear, loss=torch.nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=3, out_features=2)
        .fit((torch.randn(64, 3), torch.randn(64, 2)), epochs=1, verbose=False)
    )
    fitted.save(tmp_path / "lin.safetensors")
    assert isinstance(S.load(tmp_path / "lin.safetensors").model, torch.nn.Linear)


def test_a_constructor_raising_systemexit_is_an_error(tmp_path):
    class Exits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            raise SystemExit(3)

    path = crafted_model_file(tmp_path / "m.safetensors", "x:Exits")
    with pytest.raises(RuntimeError, match="SystemExit"):
        MF.build_checked(Exits, {}, {"w": (1,)}, "x:Exits", str(path), "pass module=")


# -- nothing big is built before the shapes fit ----------------------------------------------------------


def test_huge_hparams_are_refused_before_allocating(tmp_path):
    # 30000 x 30000 float32 would be 3.6 GB; the check builds on `meta` first and compares shapes.
    path = crafted_model_file(
        tmp_path / "big.safetensors",
        "torch.nn:Linear",
        hparams={"in_features": 30000, "out_features": 30000},
        tensors={"weight": torch.zeros(2, 2), "bias": torch.zeros(2)},
    )
    rc, out = run_child(
        f"""
        import resource, pyluz
        try:
            pyluz.load({str(path)!r})
        except ValueError as e:
            print("REFUSED", e)
        print("PEAK_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
        """,
        tmp_path,
    )
    assert rc == 0, out
    assert "REFUSED" in out and "does not match the file's weights" in out and "weight: model (30000, 30000)" in out
    peak = int(out.split("PEAK_MB")[1].split()[0])
    assert peak < 2000, out


def test_metadata_size_is_capped(tmp_path):
    path = tmp_path / "fat.safetensors"
    meta = {"format": "pyluz-fitted", "format_version": 1, "module": None, "records": {"pad": "x" * (9 * 2**20)}}
    save_file({"w": torch.zeros(1)}, str(path), metadata={"pyluz": json.dumps(meta)})
    with pytest.raises(ValueError, match="more than pyluz reads"):
        S.load(path)
    with pytest.raises(ValueError, match="more than pyluz reads"):
        S.read_metadata(path)


def test_main_class_of_another_script_is_named(tmp_path):
    save = """
        import torch, pyluz
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(4, {n})
            def forward(self, x):
                return self.fc(x)
        x = torch.randn(64, 4)
        {body}
        """
    path = str(tmp_path / "main.safetensors")
    rc, out = run_child(
        save.format(
            n=2,
            body=f"""
        pyluz.setup(Net, loss=torch.nn.MSELoss(), optimizer=torch.optim.SGD).fit((x, torch.randn(64, 2)), epochs=1,
                                                                                  verbose=False).save({path!r})""",
        ),
        tmp_path,
    )
    assert rc == 0, out
    rc, out = run_child(
        save.format(
            n=3,
            body=f"""
        try:
            pyluz.load({path!r})
        except ValueError as e:
            print("REFUSED", e)""",
        ),
        tmp_path,
    )
    assert rc == 0, out
    assert "REFUSED" in out and "`__main__`" in out and "'Net'" in out and "not the one it was saved from" in out


# -- checkpoint structure ------------------------------------------------------------------------------


def dag_checkpoint(path, where="records"):
    state = {
        "format": "pyluz-checkpoint",
        "format_version": 1,
        "epoch": 1,
        "model": {},
        "optimizers": {},
        "callbacks": [],
        "records": {"metrics": {"train": [], "valid": []}},
        "rng": {},
    }
    if where == "records":
        state["records"]["dag"] = list_dag()
    else:
        state["callbacks"] = [{"name": "X", "state": list_dag()}]
    torch.save(state, str(path))
    assert os.path.getsize(path) < 4000
    return path


@pytest.mark.parametrize("where", ["records", "callbacks"])
def test_a_list_dag_checkpoint_fails_fast(tmp_path, where):
    path = dag_checkpoint(tmp_path / "state.pt", where)
    rc, out = run_child(
        f"""
        import torch, pyluz
        from pyluz.callbacks import AutoResume, ResumeFromCheckpoint
        m = pyluz.setup(torch.nn.Linear, loss=torch.nn.MSELoss(), optimizer=torch.optim.SGD) \\
            .set_hparams(in_features=3, out_features=1)
        data = (torch.randn(64, 3), torch.randn(64, 1))
        fitted = m.fit(data, epochs=1, verbose=False)
        for name, run in [
                ("load_checkpoint", lambda: pyluz.load_checkpoint(fitted, {str(path)!r}, restore_records=True)),
                ("AutoResume", lambda: m.fit(data, epochs=2, verbose=False, callbacks=[AutoResume({str(path)!r})])),
                ("ResumeFromCheckpoint", lambda: m.fit(data, epochs=2, verbose=False, callbacks=[
                    ResumeFromCheckpoint({str(path)!r}, restore_records=True, restore_callbacks_state=True)]))]:
            try:
                run()
                print(name, "LOADED")
            except Exception as e:
                print(name, "REFUSED", "damaged or crafted" in str(e))
        """,
        tmp_path,
    )
    assert rc == 0, out
    for name in ("load_checkpoint", "AutoResume", "ResumeFromCheckpoint"):
        assert f"{name} REFUSED True" in out, out


def test_records_must_be_lists_of_dicts(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"model": {}, "records": {"metrics": {"train": [1, 2]}}}, str(path))
    with pytest.raises(ValueError, match=r"\['metrics'\]\['train'\]\[0\] must be a dict"):
        C.read_checkpoint(path)
    shared = {"loss": 1.0}
    torch.save({"model": {}, "records": {"metrics": {"train": [shared, shared]}}}, str(path))
    with pytest.raises(ValueError, match="same container"):
        C.read_checkpoint(path)


def test_check_plain_tree_allows_shared_tuples_where_asked():
    betas = (0.9, 0.99)
    F.check_plain_tree({"a": betas, "b": betas}, "x", shared_ok=True)
    with pytest.raises(ValueError, match="more than"):
        F.check_plain_tree(list_dag(), "x", shared_ok=True)


# -- only regular files ----------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_never_hangs_a_loader(tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    rc, out = run_child(
        f"""
        import torch, pyluz
        from pyluz.callbacks import AutoResume, ResumeFromCheckpoint
        m = pyluz.setup(torch.nn.Linear, loss=torch.nn.MSELoss(), optimizer=torch.optim.SGD) \\
            .set_hparams(in_features=3, out_features=1)
        data = (torch.randn(64, 3), torch.randn(64, 1))
        fitted = m.fit(data, epochs=1, verbose=False)
        path = {str(fifo)!r}
        for name, run in [
                ("load", lambda: pyluz.load(path)),
                ("load_model_weights", lambda: pyluz.load_model_weights(fitted, path)),
                ("load_checkpoint", lambda: pyluz.load_checkpoint(fitted, path)),
                ("read_metadata", lambda: pyluz.serialization.read_metadata(path)),
                ("AutoResume", lambda: m.fit(data, epochs=1, verbose=False, callbacks=[AutoResume(path)])),
                ("ResumeFromCheckpoint", lambda: m.fit(data, epochs=1, verbose=False,
                                                       callbacks=[ResumeFromCheckpoint(path)]))]:
            try:
                run()
                print(name, "LOADED")
            except Exception as e:  # AutoResume's error arrives as a CallbackError
                print(name, "REFUSED", "not a regular file" in str(e))
        """,
        tmp_path,
    )
    assert rc == 0, out
    for name in (
        "load",
        "load_model_weights",
        "load_checkpoint",
        "read_metadata",
        "AutoResume",
        "ResumeFromCheckpoint",
    ):
        assert f"{name} REFUSED True" in out, out
