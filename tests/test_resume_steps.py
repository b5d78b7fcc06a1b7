"""AutoResume inside an epoch: a fit SIGKILLed at a random step, re-run, ends bit-identical to an uninterrupted one.

Each trial forks a child that runs the fit and SIGKILLs itself after a random training step; the
parent checks how much work the checkpoint it left keeps, re-runs the same fit and compares the
final weights (torch.equal) and records with those of an uninterrupted run.
"""

import os
import random
import signal

import numpy as np
import pytest
import torch
from helpers import Net, classification_data, resume_script
from torch import nn

import pyluz
from pyluz.callbacks import AutoResume, GradientAccumulation, LRScheduler
from pyluz.checkpoints import read_checkpoint

EVERY = 4  # every_n_steps
EPOCHS = 3
BATCHES = 8  # per epoch: 160 rows, 20 % for validation, batches of 16
SCENARIOS = ["memory", "loader", "accumulation", "onecycle", "metric"]
TRIALS = 4  # per scenario: 20 kills in all


_rr = resume_script()
RowDataset, NoisyLoss = _rr.RowDataset, _rr.NoisyLoss


class KillAfter(pyluz.Callback):
    """SIGKILLs this process after its `at`-th training step (before AutoResume sees that step)."""

    def __init__(self, at):
        self.at, self.count = at, 0

    def on_train_batch_end(self):
        self.count += 1
        if self.count == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


class KillAfterWrites(KillAfter):
    """KillAfter, but only once AutoResume's writes in flight are on disk (a known checkpoint to resume)."""

    def on_train_batch_end(self):
        if self.count + 1 == self.at:
            next(cb for cb in self.ctx.callbacks if isinstance(cb, AutoResume))._wait_for_writes()
        super().on_train_batch_end()


def fit(path, scenario, extra=(), metrics=None):
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    x, y = classification_data(n=160, seed=1)
    data = RowDataset(x, y) if scenario == "loader" else (x, y)
    options = {"batch_size": 16, "num_workers": 2} if scenario == "loader" else {"batch_size": 16}
    callbacks = [NoisyLoss()]
    if scenario == "accumulation":
        callbacks.append(GradientAccumulation(steps=3))  # groups of 3, 3, 2: checkpoints fall mid-cycle
    if scenario == "onecycle":
        callbacks.append(
            LRScheduler(
                torch.optim.lr_scheduler.OneCycleLR,
                call_on="on_train_batch_end",
                max_lr=0.05,
                total_steps=EPOCHS * BATCHES,
            )
        )
    metrics = [pyluz.metrics.Accuracy()] if scenario == "metric" else metrics
    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=metrics)
    model = model.set_hparams(dropout=0.3).set_opt_hparams(lr=0.02)
    return model.fit(
        data,
        epochs=EPOCHS,
        valid_data=0.2,
        callbacks=[*callbacks, *extra, AutoResume(path, every_n_steps=EVERY)],
        verbose=False,
        dataloader_options=options,
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; and a forked child must not inherit a busy thread pool
    yield
    torch.set_num_threads(before)


def in_child(fn):
    """Run `fn()` in a forked child; return how it ended (the signal number, or -exit status)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            fn()
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)


def steps_kept(path):
    """Training steps the checkpoint at `path` holds (finished epochs plus the position inside one)."""
    state = read_checkpoint(path)
    position = state.get("position")
    return state["epoch"] * BATCHES + (position["consumed"] if position else 0)


def assert_same_run(a, b):
    wa, wb = a.model.state_dict(), b.model.state_dict()
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert a.records["metrics"] == b.records["metrics"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_sigkill_at_random_steps_then_rerun_is_bit_identical(tmp_path, scenario):
    reference = fit(str(tmp_path / "ref.pt"), scenario)
    picks = random.Random(f"kill-{scenario}").sample(range(1, EPOCHS * BATCHES), TRIALS)
    for trial, at in enumerate(picks):
        path = str(tmp_path / f"state-{trial}.pt")
        assert in_child(lambda path=path, at=at: fit(path, scenario, [KillAfter(at)])) == signal.SIGKILL
        kept = steps_kept(path) if os.path.exists(path) else 0
        # A write still in flight at the kill leaves the one before it: at most N more steps lost.
        assert at - 2 * EVERY <= kept <= at, (at, kept)
        resumed = fit(path, scenario)
        assert_same_run(reference, resumed)
        assert not os.path.exists(path)  # a finished fit deletes its state


def test_kill_during_a_checkpoint_write_resumes_from_the_previous_one(tmp_path):
    reference = fit(str(tmp_path / "ref.pt"), "memory")
    path = str(tmp_path / "state.pt")

    def die_in_third_write():
        real_replace, writes = os.replace, [0]

        def half_then_die(src, dst, *args, **kwargs):
            writes[0] += 1
            if writes[0] == 3:  # steps 4, 8 (epoch end), 12: die halfway through writing step 12
                with open(src, "r+b") as f:
                    f.truncate(os.path.getsize(src) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst, *args, **kwargs)

        os.replace = half_then_die
        fit(path, "memory")

    assert in_child(die_in_third_write) == signal.SIGKILL
    assert read_checkpoint(path)["epoch"] == 1 and "position" not in read_checkpoint(path)  # the epoch-1 end
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # the half-written file is left behind
    assert_same_run(reference, fit(path, "memory"))
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_resume_log_line_names_the_position(tmp_path, capsys):
    path = str(tmp_path / "state.pt")
    assert in_child(lambda: fit(path, "memory", [KillAfterWrites(15)])) == signal.SIGKILL
    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(dropout=0.3)
    model = model.set_opt_hparams(lr=0.02)
    torch.manual_seed(3)
    x, y = classification_data(n=160, seed=1)
    model.fit(
        (x, y),
        epochs=EPOCHS,
        valid_data=0.2,
        verbose=True,
        dataloader_options={"batch_size": 16},
        callbacks=[NoisyLoss(), AutoResume(path, every_n_steps=EVERY)],
    )
    text = capsys.readouterr().err
    assert f"Resumed from {path} at epoch 2, step 4 of {BATCHES}." in text


def test_metric_state_round_trips():
    m = pyluz.metrics.Accuracy()
    m.update(torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), torch.tensor([1, 1, 1]))
    again = pyluz.metrics.Accuracy()
    again.load_state_dict(m.state_dict())
    assert again.compute() == m.compute() == pytest.approx(2 / 3)


def test_torchmetrics_states_resume_inside_an_epoch(tmp_path):
    # A sum-state metric and a "cat" (list) state metric: a resumed epoch continues their running states.
    pytest.importorskip("torchmetrics")
    from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC

    def metrics():
        return [MulticlassAccuracy(num_classes=2), MulticlassAUROC(num_classes=2)]

    reference = fit(str(tmp_path / "ref.pt"), "memory", metrics=metrics())
    path = str(tmp_path / "state.pt")
    assert in_child(lambda: fit(path, "memory", [KillAfterWrites(14)], metrics=metrics())) == signal.SIGKILL
    saved = read_checkpoint(path)["position"]["metrics"]
    assert read_checkpoint(path)["position"]["consumed"] == 4
    auroc = saved[2]["states"]  # after the loss: accuracy, AUROC
    assert len(auroc["preds"]) == 4 and auroc["preds"][0].shape == (16, 2)  # one tensor per batch
    assert saved[2]["update_count"] == 4
    resumed = fit(path, "memory", metrics=metrics())
    assert_same_run(reference, resumed)
    assert {"multiclassaccuracy", "multiclassauroc"} <= set(resumed.records["metrics"]["train"][0])


def test_torchmetric_state_round_trips():
    pytest.importorskip("torchmetrics")
    from torchmetrics.classification import MulticlassAUROC

    from pyluz.metrics import TorchMetric

    preds, target = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]), torch.tensor([1, 0, 0])
    m = TorchMetric(MulticlassAUROC(num_classes=2)).fresh()
    m.update(preds[:2], target[:2])
    again = TorchMetric(MulticlassAUROC(num_classes=2)).fresh()
    again.load_state_dict(m.state_dict())
    again.update(preds[2:], target[2:])
    m.update(preds[2:], target[2:])
    assert again.compute() == m.compute()
    with pytest.raises(ValueError, match="the saved state holds"):
        again.load_state_dict({"states": {"tp": torch.zeros(2)}, "update_count": 1})


def test_mid_epoch_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"AutoResume: `every_n_steps` must be an integer >= 1, got 0"):
        AutoResume(str(tmp_path / "s.pt"), every_n_steps=0)
    with pytest.raises(ValueError, match=r"AutoResume: `every_seconds` must be a positive finite number"):
        AutoResume(str(tmp_path / "s.pt"), every_seconds=-1)
    assert "every_n_steps=5" in repr(AutoResume(str(tmp_path / "s.pt"), every_n_steps=5))


class CrashAfter(pyluz.Callback):
    """Raises after the `at`-th training step, as a bug would."""

    def __init__(self, at):
        self.at, self.count = at, 0

    def on_train_batch_end(self):
        self.count += 1
        if self.count == self.at:
            raise RuntimeError("simulated crash")


def test_every_seconds_checkpoints_inside_epochs(tmp_path, monkeypatch):
    reference = fit(str(tmp_path / "ref.pt"), "memory")
    path = str(tmp_path / "state.pt")
    every_step = [AutoResume(path, every_seconds=1e-9)]
    x, y = classification_data(n=160, seed=1)

    def run(extra=()):
        torch.manual_seed(3)
        random.seed(3)
        np.random.seed(3)
        model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
        model = model.set_hparams(dropout=0.3).set_opt_hparams(lr=0.02)
        return model.fit(
            (x, y),
            epochs=EPOCHS,
            valid_data=0.2,
            verbose=False,
            dataloader_options={"batch_size": 16},
            callbacks=[NoisyLoss(), *extra, *every_step],
        )

    with pytest.raises(pyluz.CallbackError, match="simulated crash"):
        run([CrashAfter(13)])
    every_step[0]._wait_for_writes()
    assert steps_kept(path) == 12  # written after every step (the 13th raised before AutoResume saw it)
    assert_same_run(reference, run())


def test_a_mid_epoch_state_needs_mid_epoch_settings(tmp_path):
    path = str(tmp_path / "state.pt")
    assert in_child(lambda: fit(path, "memory", [KillAfterWrites(15)])) == signal.SIGKILL
    assert read_checkpoint(path)["position"]["consumed"] == 4  # step 12 = epoch 2, batch 4
    x, y = classification_data(n=160, seed=1)
    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(dropout=0.3)
    with pytest.raises(Exception, match="written inside an epoch"):
        model.set_opt_hparams(lr=0.02).fit(
            (x, y),
            epochs=EPOCHS,
            valid_data=0.2,
            verbose=False,
            dataloader_options={"batch_size": 16},
            callbacks=[NoisyLoss(), AutoResume(path)],
        )


def test_mid_epoch_checkpoints_are_refused_under_ddp(tmp_path, monkeypatch):
    monkeypatch.setattr(pyluz.callbacks.resume, "world_size", lambda: 2)
    with pytest.raises(Exception, match="aren't supported under DDP"):
        fit(str(tmp_path / "state.pt"), "memory")


def test_the_lock_of_a_killed_fit_is_not_kept_by_its_forked_children(tmp_path):
    """DataLoader workers outlive a SIGKILLed fit for a while; they must not keep its lock (as `flock` did)."""
    from pyluz.callbacks.resume import hold_lock, release_lock

    path = str(tmp_path / "state.pt")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: lock, fork a long-lived "worker", die
        try:
            hold_lock(path)
            if os.fork() == 0:
                os.close(w)
                os.read(r, 1)  # lives until the test closes its end of the pipe
                os._exit(0)
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(3)
    os.close(r)
    try:
        assert os.waitpid(pid, 0)[1] & 0x7F == signal.SIGKILL
        hold_lock(path)  # the "worker" still has the lock file open: not refused
        release_lock(path)
    finally:
        os.close(w)


def test_only_epoch_end_writes_fsync_the_directory(tmp_path, monkeypatch):
    # A mid-epoch file's rename may be lost to a power cut (the previous checkpoint is as exact a
    # start); an epoch's end, with or without steps inside, stays durable.
    import pyluz.files

    synced = []
    monkeypatch.setattr(pyluz.files, "_fsync_dir", lambda directory: synced.append(directory))
    calls = []
    real_commit = pyluz.files.PendingFile.commit

    def counting_commit(self, durable_rename=True):
        calls.append(durable_rename)
        return real_commit(self, durable_rename)

    monkeypatch.setattr(pyluz.files.PendingFile, "commit", counting_commit)
    fit(str(tmp_path / "state.pt"), "memory")
    mid_epoch = (BATCHES - 1) // EVERY  # the write due at the epoch's last batch is the epoch-end one
    assert calls.count(False) == EPOCHS * mid_epoch
    assert calls.count(True) == EPOCHS
    assert len(synced) == EPOCHS
