"""AutoResume: an interrupted run, re-run, ends with exactly the weights of an uninterrupted one."""

import os
import random
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import pyluz
from pyluz import checkpoints as C
from pyluz import serialization as S
from pyluz.callbacks import AutoResume, EarlyStopping, KeepBestModel
from helpers import resume_script

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "scripts", "resume_run.py")
ROOT = os.path.dirname(HERE)

rr = resume_script()


class Crash(pyluz.Callback):
    """Raises at (epoch, iter) of `where`, like a bug or an out-of-memory error would."""

    def __init__(self, epoch, iteration=None, where="on_train_batch_end"):
        self.epoch, self.iteration = epoch, iteration
        setattr(self, where, self._maybe_crash)

    def _maybe_crash(self):
        if self.ctx.epoch == self.epoch and (self.iteration is None or self.ctx.iter == self.iteration):
            raise RuntimeError("simulated crash")


class Interrupt(pyluz.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self):
        if self.ctx.epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread (and the subprocess uses one too)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_run(a, b):
    wa, wb = weights(a.model), weights(b.model)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert a.records["metrics"] == b.records["metrics"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs (tensors and Dataset inputs)."""
    d = tmp_path_factory.mktemp("ref")
    return {kind: rr.fit(str(d / f"{kind}.pt"), kind=kind) for kind in ("tensors", "dataset")}


@pytest.mark.parametrize("kind", ["tensors", "dataset"])
@pytest.mark.parametrize(
    "crash",
    [
        dict(epoch=3, iteration=5),  # mid-epoch
        dict(epoch=2, where="on_epoch_end"),  # after training, before the epoch's checkpoint
        dict(epoch=4, where="on_valid_batch_end", iteration=1),
        dict(epoch=1, iteration=2),  # before any checkpoint exists
    ],
)
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, reference, kind, crash):
    state = str(tmp_path / "run" / "state.pt")
    with pytest.raises(pyluz.CallbackError, match="simulated crash"):
        rr.fit(state, [Crash(**crash)], kind=kind)
    assert os.path.exists(state) == (crash["epoch"] > 1)
    resumed = rr.fit(state, kind=kind)
    assert_same_run(resumed, reference[kind])
    assert not os.path.exists(state)  # a completed run starts fresh next time


def test_several_crashes_in_a_row(tmp_path, reference):
    state = str(tmp_path / "state.pt")
    for epoch, it in [(2, 3), (2, 7), (5, 1)]:
        with pytest.raises(pyluz.CallbackError):
            rr.fit(state, [Crash(epoch, it)])
    assert_same_run(rr.fit(state), reference["tensors"])


def test_checkpoint_restores_every_part(tmp_path):
    state = str(tmp_path / "state.pt")
    with pytest.raises(pyluz.CallbackError):
        rr.fit(state, [Crash(3, 1)])
    ckpt = C.read_checkpoint(state)
    assert ckpt["epoch"] == 2
    assert len(ckpt["records"]["metrics"]["train"]) == 2
    names = [c["name"] for c in ckpt["callbacks"]]
    steplr = ckpt["callbacks"][names.index("StepLR")]["state"]
    assert steplr["last_epoch"] == 2
    assert ckpt["optimizers"]["opt"]["param_groups"][0]["lr"] == pytest.approx(0.01)
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch"}

    seen = {}

    class Probe(pyluz.Callback):
        weight = float("inf")  # after AutoResume's on_fit_begin

        def on_fit_begin(self):
            seen["records"] = len(self.ctx.records["metrics"]["train"])
            seen["lr"] = self.ctx.opt.param_groups[0]["lr"]
            seen["rng"] = torch.get_rng_state()

        def on_epoch_begin(self):
            seen.setdefault("epochs", []).append(self.ctx.epoch)

    rr.fit(state, late=[Probe()])
    assert seen["records"] == 2 and seen["lr"] == pytest.approx(0.01)
    assert torch.equal(seen["rng"], ckpt["rng"]["torch"])
    assert seen["epochs"] == [3, 4, 5, 6]  # the finished epochs were skipped before reaching Probe


def test_keyboard_interrupt_keeps_the_state_for_the_next_run(tmp_path, reference):
    state = str(tmp_path / "state.pt")
    partial = rr.fit(state, [Interrupt(4)])
    assert len(partial.records["metrics"]["train"]) == 3
    assert os.path.exists(state)
    assert_same_run(rr.fit(state), reference["tensors"])


def test_early_stopped_run_deletes_the_state(tmp_path):
    state = str(tmp_path / "state.pt")
    stopped = rr.fit(state, patience=0, min_delta=0.05)
    n = len(stopped.records["metrics"]["train"])
    assert n < rr.EPOCHS and not os.path.exists(state)
    again = rr.fit(state, patience=0, min_delta=0.05)  # starts fresh, so it is the same run again
    assert_same_run(again, stopped)


def test_early_stopping_state_survives_a_crash(tmp_path):
    # Interrupted and resumed early stopping stops at the same epoch as an uninterrupted one.
    # Without the restored best value, the resumed run would not stop at epoch n.
    ref = rr.fit(str(tmp_path / "ref.pt"), patience=1, min_delta=0.05)
    n = len(ref.records["metrics"]["train"])
    assert 2 <= n < rr.EPOCHS
    state = str(tmp_path / "state.pt")
    with pytest.raises(pyluz.CallbackError):
        rr.fit(state, [Crash(n, 2)], patience=1, min_delta=0.05)
    assert_same_run(rr.fit(state, patience=1, min_delta=0.05), ref)


def test_keep_best_model_weights_survive_a_crash(tmp_path):
    ref = rr.fit(str(tmp_path / "ref.pt"), [KeepBestModel(monitor="train_loss", mode="max")])
    state = str(tmp_path / "state.pt")
    # The best (highest) train loss is at epoch 1, before the crash: its weights come from the checkpoint.
    with pytest.raises(pyluz.CallbackError):
        rr.fit(state, [KeepBestModel(monitor="train_loss", mode="max"), Crash(4, 1)])
    resumed = rr.fit(state, [KeepBestModel(monitor="train_loss", mode="max")])
    assert_same_run(resumed, ref)


def test_autoresume_before_a_stateful_inf_callback_warns(tmp_path):
    torch.manual_seed(0)
    model = pyluz.setup(rr.Net, loss=torch.nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
    with pytest.warns(UserWarning, match="AutoResume runs before EarlyStopping"):
        model.fit(
            rr.data(),
            epochs=1,
            valid_data=0.2,
            verbose=False,
            callbacks=[AutoResume(str(tmp_path / "s.pt")), EarlyStopping()],
        )


def test_resume_message_when_verbose(tmp_path, capsys):
    state = str(tmp_path / "state.pt")
    with pytest.raises(pyluz.CallbackError):
        rr.fit(state, [Crash(2, 1)])
    torch.manual_seed(42)
    model = pyluz.setup(rr.Net, loss=torch.nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.02)
    # Same settings and callbacks, verbose (other settings are refused: test_failure_state.py).
    cbs = [rr.NoisyLoss(), rr.StepLR(), EarlyStopping(patience=100), AutoResume(state)]
    model.fit(
        rr.data(), epochs=rr.EPOCHS, valid_data=0.2, callbacks=cbs, verbose=True, dataloader_options={"batch_size": 16}
    )
    assert f"Resumed from {state} after epoch 1 of {rr.EPOCHS}." in capsys.readouterr().err


def test_state_from_another_model_is_a_clear_error(tmp_path):
    state = str(tmp_path / "state.pt")
    with pytest.raises(pyluz.CallbackError):
        rr.fit(state, [Crash(2, 1)])
    model = (
        pyluz.setup(torch.nn.Linear, loss=torch.nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=6, out_features=1)
        .set_opt_hparams(lr=0.1)
    )
    with pytest.raises(pyluz.CallbackError, match="Delete the file to start fresh"):
        model.fit((torch.randn(32, 6), torch.randn(32, 1)), epochs=1, verbose=False, callbacks=[AutoResume(state)])


def test_argument_errors(tmp_path):
    with pytest.raises(
        ValueError, match="AutoResume: `path` must be a file path such as './state.pt', not a directory, got"
    ):
        AutoResume(str(tmp_path))
    with pytest.raises(TypeError, match="`path` must be a file path"):
        AutoResume(3)


# -- SIGKILL at random moments, in a subprocess ---------------------------------------------------


def run_script(state, out, *extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--state", state, "--out", out, *map(str, extra)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_at_random_moments_then_rerun_gives_the_same_weights(tmp_path, reference):
    # The uninterrupted reference runs in this process (one thread, like the script).
    ref_out, out = str(tmp_path / "ref.safetensors"), str(tmp_path / "out.safetensors")
    reference["tensors"].save(ref_out)

    state = str(tmp_path / "run" / "state.pt")
    n_train = 160 // 16  # 200 rows, 20% for validation, batches of 16, last one dropped
    total = rr.events_per_run(n_train, 40 // 16 + 1)
    rng = random.Random(20240611)
    # A kill at a seeded-random breakpoint call, then one halfway through writing the 2nd checkpoint
    # of the resumed run, then a clean run.
    kills = [("--kill-at", rng.randint(total // 6, total // 2)), ("--kill-in-write", 2)]
    for flag, at in kills:
        proc = run_script(state, out, flag, at)
        assert proc.returncode == -9, (flag, at, proc.returncode, proc.stderr)
        assert not os.path.exists(out)
    assert os.path.exists(state)
    proc = run_script(state, out)
    assert proc.returncode == 0, proc.stderr
    assert not os.path.exists(state)
    assert os.listdir(os.path.dirname(state)) == []  # the half-written temp file was cleaned up

    ref, got = load_file(ref_out), load_file(out)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert S.read_metadata(out)["records"]["metrics"] == S.read_metadata(ref_out)["records"]["metrics"]
