"""What survives a failure: a failed fit's records and model, AutoResume's settings check and lock, temp files."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import pyluz
from helpers import regression_data
from pyluz import files as F
from pyluz.callbacks import AutoResume, ModelCheckpoint

HANG_GUARD_S = int(os.environ.get("PYLUZ_TEST_HANG_GUARD_S", "300"))  # a hang guard, never a timing assertion


def data(n=64, seed=0):
    return regression_data(n, seed, weights=[1.0, -2.0, 0.5])


def linear(lr=0.1):
    return (
        pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=3, out_features=1)
        .set_opt_hparams(lr=lr)
    )


class FailAt(pyluz.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self):
        if self.ctx.epoch == self.epoch:
            raise ValueError("boom")


class Stop(pyluz.Callback):
    """Ctrl-C at the start of `epoch`: the Interrupt handler ends the fit and AutoResume keeps its file."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self):
        if self.ctx.epoch == self.epoch:
            raise KeyboardInterrupt


# -- a failed fit keeps its work --------------------------------------------------------------------


def test_a_callback_error_carries_the_finished_epochs_and_the_model():
    torch.manual_seed(0)
    with pytest.raises(pyluz.CallbackError) as info:
        linear().fit(data(), epochs=5, callbacks=[FailAt(3)], verbose=False)
    err = info.value
    assert isinstance(err.__cause__, ValueError)
    train = err.records["metrics"]["train"]
    assert len(train) == 2 and train[1]["loss"] < train[0]["loss"]
    # The model is the one trained for two epochs: its loss on the data is the next epoch's start.
    x, y = data()
    with torch.no_grad():
        assert isinstance(err.model, nn.Linear)
        assert nn.functional.mse_loss(err.model(x), y).item() < train[0]["loss"]


class BadForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 2:  # two batches of 32 = epoch 1; fails in epoch 2
            raise FloatingPointError("model bug")
        return self.fc(x)


def test_a_model_error_keeps_its_type_and_carries_the_records():
    m = pyluz.setup(BadForward, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    with pytest.raises(FloatingPointError) as info:
        m.fit(data(), epochs=3, verbose=False)
    assert len(info.value.records["metrics"]["train"]) == 1
    assert isinstance(info.value.model, BadForward)


# -- AutoResume refuses other settings -------------------------------------------------------------


def test_auto_resume_refuses_a_rerun_with_other_opt_hparams(tmp_path):
    state = str(tmp_path / "state.pt")
    linear(lr=0.1).fit(data(), epochs=4, callbacks=[Stop(3), AutoResume(state)], verbose=False)
    assert os.path.exists(state)
    with pytest.raises(pyluz.CallbackError, match=r"other settings \(opt_hparams lr: 0.1 in the file, 0.5 now\)"):
        linear(lr=0.5).fit(data(), epochs=4, callbacks=[AutoResume(state)], verbose=False)
    other = (
        pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=3, out_features=1, bias=False)
        .set_opt_hparams(lr=0.1)
    )
    with pytest.raises(pyluz.CallbackError, match=r"hparams bias: '<unset>' in the file, False now"):
        other.fit(data(), epochs=4, callbacks=[AutoResume(state)], verbose=False)
    # The same settings resume: two more epochs, four in the records.
    fitted = linear(lr=0.1).fit(data(), epochs=4, callbacks=[AutoResume(state)], verbose=False)
    assert len(fitted.records["metrics"]["train"]) == 4


# -- one live process per state file; temp files of the dead only -----------------------------------


def child(code, tmp_path, name="child"):
    out = open(tmp_path / f"{name}.out", "wb")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=str(tmp_path),
    )


def wait_for(proc, path, text):
    """Wait until the child wrote `text` to its output (or ended); a hang guard, not a timing check."""
    import time

    start = time.monotonic()
    while time.monotonic() - start < HANG_GUARD_S:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        if proc.poll() is not None:
            pytest.fail(f"the child ended early:\n{content}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"the child never printed {text!r}")


def test_a_second_live_process_on_one_state_file_is_refused(tmp_path):
    state = str(tmp_path / "state.pt")
    proc = child(
        f"""
        import sys, torch, pyluz
        from torch import nn
        class Hold(pyluz.Callback):
            def on_epoch_begin(self):
                if self.ctx.epoch == 2:   # epoch 1's state is written
                    print("HOLDING", flush=True)
                    sys.stdin.readline()   # waits until the parent closes stdin (or kills us)
        x = torch.randn(64, 3)
        pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD) \\
            .set_hparams(in_features=3, out_features=1) \\
            .set_opt_hparams(lr=0.1) \\
            .fit((x, x[:, :1]), epochs=2, verbose=False, callbacks=[Hold(), pyluz.callbacks.AutoResume({state!r})])
        """,
        tmp_path,
    )
    try:
        wait_for(proc, tmp_path / "child.out", "HOLDING")
        with pytest.raises(pyluz.CallbackError, match=rf"another live process \(pid {proc.pid}\)"):
            linear().fit(data(), epochs=2, callbacks=[AutoResume(state)], verbose=False)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # SIGKILL left the lock file and the state file; the kernel dropped the lock, so this fit resumes.
    assert os.path.exists(state) and os.path.exists(tmp_path / ".state.pt.lock")
    fitted = linear().fit(data(), epochs=2, callbacks=[AutoResume(state)], verbose=False)
    assert len(fitted.records["metrics"]["train"]) == 2
    assert not os.path.exists(tmp_path / ".state.pt.lock")


def test_only_temp_files_of_dead_processes_are_removed(tmp_path):
    target = tmp_path / "state.pt"
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        live_tmp = tmp_path / f".state.pt.{live.pid}@{F._HOST_TAG}.0123abcd.tmp"
        dead_tmp = tmp_path / f".state.pt.{dead.pid}@{F._HOST_TAG}.0123abcd.tmp"
        other_host = tmp_path / f".state.pt.{dead.pid}@ffffffff.0123abcd.tmp"
        for p in (live_tmp, dead_tmp, other_host):
            p.write_bytes(b"partial")
        F.remove_temp_files(target)
        assert live_tmp.exists() and other_host.exists() and not dead_tmp.exists()
    finally:
        live.stdin.close()
        live.wait()


def test_a_pending_file_is_invisible_until_committed(tmp_path):
    target = tmp_path / "state.pt"
    target.write_bytes(b"previous")
    pending = F.PendingFile(str(target))
    pending.file.write(b"new")
    pending.file.flush()
    # Ours and in flight: another write into the folder must not take it for a dead writer's.
    F.remove_temp_files(str(target))
    assert os.path.exists(pending.temp) and target.read_bytes() == b"previous"
    assert pending.commit(durable_rename=False) == str(target)
    assert target.read_bytes() == b"new" and temp_files(tmp_path) == []

    dropped = F.PendingFile(str(target))
    dropped.file.write(b"never")
    dropped.discard()
    assert target.read_bytes() == b"new" and temp_files(tmp_path) == []

    failing = F.PendingFile(str(tmp_path / "gone" / "x.pt"))  # its folder disappears before the rename
    os.unlink(failing.temp)
    os.rmdir(tmp_path / "gone")
    with pytest.raises(FileNotFoundError):
        failing.commit()
    assert failing.temp not in F._IN_FLIGHT


KILL_BEFORE_RENAME = """
    import os, signal, torch, pyluz
    from torch import nn
    x = torch.randn(64, 3)
    m = pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_hparams(in_features=3, out_features=1)
    {before}
    os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)   # dies after writing, before the rename
    {write}
    """


def temp_files(directory):
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


def test_fitted_save_leaves_no_temp_file_after_a_kill(tmp_path):
    path = str(tmp_path / "model.safetensors")
    proc = child(
        KILL_BEFORE_RENAME.format(
            before="fitted = m.fit((x, x[:, :1]), epochs=1, verbose=False)", write=f"fitted.save({path!r})"
        ),
        tmp_path,
    )
    assert proc.wait(timeout=HANG_GUARD_S) == -signal.SIGKILL
    assert len(temp_files(tmp_path)) == 1 and not os.path.exists(path)  # the kill left its temp file
    linear().fit(data(), epochs=1, verbose=False).save(path)
    assert temp_files(tmp_path) == [] and os.path.exists(path)


def test_model_checkpoint_leaves_no_temp_file_after_a_kill(tmp_path):
    ckpt = str(tmp_path / "ck") + "/"
    proc = child(
        KILL_BEFORE_RENAME.format(
            before="",
            write=f"m.fit((x, x[:, :1]), epochs=3, verbose=False, "
            f"callbacks=[pyluz.callbacks.ModelCheckpoint({ckpt!r}, monitor='train_loss')])",
        ),
        tmp_path,
    )
    assert proc.wait(timeout=HANG_GUARD_S) == -signal.SIGKILL
    assert len(temp_files(tmp_path / "ck")) == 1
    cb = ModelCheckpoint(ckpt, monitor="train_loss")
    linear().fit(data(), epochs=2, verbose=False, callbacks=[cb])
    assert temp_files(tmp_path / "ck") == [] and len(cb.saved) == 2


def test_a_failed_resume_does_not_keep_the_lock(tmp_path):
    state = str(tmp_path / "state.pt")
    linear(lr=0.1).fit(data(), epochs=4, callbacks=[Stop(3), AutoResume(state)], verbose=False)
    with pytest.raises(pyluz.CallbackError, match="other settings"):
        linear(lr=0.5).fit(data(), epochs=4, callbacks=[AutoResume(state)], verbose=False)
    assert not os.path.exists(tmp_path / ".state.pt.lock")  # another process may now resume it

    cb = AutoResume(state)
    with pytest.raises(pyluz.CallbackError, match="boom"):
        linear(lr=0.1).fit(data(), epochs=4, callbacks=[FailAt(4), cb], verbose=False)
    assert os.path.exists(tmp_path / ".state.pt.lock")  # a fit that raised mid-way keeps it...
    del cb
    import gc

    gc.collect()
    assert not os.path.exists(tmp_path / ".state.pt.lock")  # ...until its callback is gone
