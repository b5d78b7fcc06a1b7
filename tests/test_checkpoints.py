"""ModelCheckpoint, KeepBestModel and ResumeFromCheckpoint."""

import copy
import os

import pytest
import torch
from torch import nn

import pyluz
from helpers import Net, classification_data
from pyluz import checkpoints as C
from pyluz.callbacks import EarlyStopping, KeepBestModel, ModelCheckpoint, ResumeFromCheckpoint


def xy(n=64, seed=0):
    return classification_data(n, seed, label=lambda x: (x[:, 0] + x[:, 2] > 0).long())


class Scripted(pyluz.Callback):
    """Logs a scripted sequence as metric `<set>_<key>`."""

    def __init__(self, values, set="valid", key="score"):
        self.values, self.set, self.key = list(values), set, key

    def on_epoch_end(self):
        self.ctx.log("metrics", self.set, {self.key: self.values[self.ctx.epoch - 1]}, index=self.ctx.epoch)


class WeightLog(pyluz.Callback):
    """Copies of the model weights at each epoch end, and at fit begin."""

    def __init__(self):
        self.epochs = {}
        self.at_fit_begin = None

    def on_fit_begin(self):
        self.at_fit_begin = {k: v.clone() for k, v in self.ctx.model.state_dict().items()}

    def on_epoch_end(self):
        self.epochs[self.ctx.epoch] = {k: v.clone() for k, v in self.ctx.model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train(callbacks, epochs=4, valid=True, seed=0, lr=0.05):
    torch.manual_seed(seed)
    return (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
        .set_opt_hparams(lr=lr)
        .fit(xy(), epochs=epochs, valid_data=xy(32, 1) if valid else None, callbacks=callbacks, verbose=False)
    )


SEQ = [3.0, 1.0, 2.0, 0.5]


# -- ModelCheckpoint ------------------------------------------------------------------------------


def test_directory_path_gets_luz_file_names(tmp_path):
    cb = ModelCheckpoint(str(tmp_path / "ckpt") + "/", monitor="valid_score")
    train([Scripted(SEQ), cb])
    expected = [f"epoch-0{i + 1}-valid_score-{v:.3f}.pt" for i, v in enumerate(SEQ)]
    assert expected[0] == "epoch-01-valid_score-3.000.pt"
    assert sorted(os.listdir(tmp_path / "ckpt")) == expected
    assert cb.saved == [str(tmp_path / "ckpt" / f) for f in expected]


def test_existing_directory_without_slash(tmp_path):
    cb = ModelCheckpoint(tmp_path, monitor="valid_score")
    train([Scripted(SEQ), cb], epochs=1)
    assert os.listdir(tmp_path) == ["epoch-01-valid_score-3.000.pt"]


def test_save_best_only_saves_first_epoch_and_improvements(tmp_path):
    cb = ModelCheckpoint(str(tmp_path) + "/", monitor="valid_score", save_best_only=True)
    log = WeightLog()
    fitted = train([Scripted(SEQ), cb, log])
    assert sorted(os.listdir(tmp_path)) == [
        "epoch-01-valid_score-3.000.pt",
        "epoch-02-valid_score-1.000.pt",
        "epoch-04-valid_score-0.500.pt",
    ]
    # The file of epoch 2 holds the weights of epoch 2.
    model = Net()
    C.load_checkpoint(model, tmp_path / "epoch-02-valid_score-1.000.pt")
    assert same(model.state_dict(), log.epochs[2])
    assert not same(log.epochs[2], log.epochs[4])
    C.load_checkpoint(fitted, tmp_path / "epoch-04-valid_score-0.500.pt")
    assert same(fitted.model.state_dict(), log.epochs[4])


def test_save_best_only_mode_max_and_min_delta(tmp_path):
    cb = ModelCheckpoint(
        str(tmp_path / "{epoch}.pt"), monitor="valid_score", save_best_only=True, mode="max", min_delta=0.6
    )
    train([Scripted([1.0, 1.5, 2.0, 2.2]), cb])
    # 1.5 is not > 1.0 + 0.6; 2.0 is; 2.2 is not > 2.0 + 0.6.
    assert sorted(os.listdir(tmp_path)) == ["1.pt", "3.pt"]


def test_templates_with_format_specs_and_nested_dirs(tmp_path):
    cb = ModelCheckpoint(str(tmp_path / "a" / "b" / "model-{epoch:03d}-{monitor:.2f}.pt"), monitor="valid_score")
    train([Scripted(SEQ), cb], epochs=2)
    assert sorted(os.listdir(tmp_path / "a" / "b")) == ["model-001-3.00.pt", "model-002-1.00.pt"]
    cb = ModelCheckpoint(str(tmp_path / "plain-{epoch}-{monitor}.pt"), monitor="valid_score")
    train([Scripted(SEQ), cb], epochs=1)
    assert os.path.exists(tmp_path / "plain-1-3.0.pt")


def test_real_valid_loss_in_the_name(tmp_path):
    cb = ModelCheckpoint(str(tmp_path) + "/")
    fitted = train([cb], epochs=2)
    losses = [e["loss"] for e in fitted.records["metrics"]["valid"]]
    assert sorted(os.listdir(tmp_path)) == [f"epoch-0{i + 1}-valid_loss-{v:.3f}.pt" for i, v in enumerate(losses)]


def test_monitor_is_only_needed_when_used(tmp_path):
    # No validation data, the default monitor "valid_loss" does not exist: fine, the template doesn't use it.
    cb = ModelCheckpoint(str(tmp_path / "e{epoch}.pt"))
    train([cb], epochs=2, valid=False)
    assert sorted(os.listdir(tmp_path)) == ["e1.pt", "e2.pt"]
    with pytest.raises(pyluz.CallbackError, match="valid_data"):
        train([ModelCheckpoint(str(tmp_path) + "/")], epochs=1, valid=False)


@pytest.mark.parametrize(
    "path, match",
    [
        ("ckpt/{foo}.pt", r"may only use the fields \{epoch\}, \{monitor\} and \{monitor_name\}"),
        ("ckpt/{}.pt", r"may only use the fields"),
        ("ckpt/{epoch:.3q}.pt", r"can't be filled in"),
        ("ckpt/{epoch.pt", r"not a valid path template"),
    ],
)
def test_bad_templates(path, match):
    with pytest.raises(ValueError, match=match):
        ModelCheckpoint(path)


def test_argument_errors():
    with pytest.raises(TypeError, match="`save_best_only` must be True or False, got 'yes'"):
        ModelCheckpoint("x.pt", save_best_only="yes")
    with pytest.raises(ValueError, match="`mode` must be one of"):
        ModelCheckpoint("x.pt", mode="best")
    with pytest.raises(TypeError, match="`path` must be a file path"):
        ModelCheckpoint(None)


# -- KeepBestModel --------------------------------------------------------------------------------


def test_keep_best_model_restores_the_best_epoch():
    log = WeightLog()
    cb = KeepBestModel(monitor="valid_score")
    fitted = train([Scripted([3.0, 1.0, 2.0, 5.0]), log, cb])
    assert cb.best_epoch == 2 and cb.best == 1.0
    assert same(fitted.model.state_dict(), log.epochs[2])
    assert not same(log.epochs[2], log.epochs[4])
    x = xy(16, 3)[0]
    ref = Net()
    ref.load_state_dict(log.epochs[2])
    ref.eval()
    assert torch.equal(fitted.predict(x), ref(x).detach())


def test_keep_best_model_with_the_real_valid_loss_and_mode_max():
    log = WeightLog()
    fitted = train([log, KeepBestModel()], epochs=5, lr=0.3)
    losses = [e["loss"] for e in fitted.records["metrics"]["valid"]]
    best = min(range(5), key=lambda i: losses[i]) + 1
    assert same(fitted.model.state_dict(), log.epochs[best])
    log = WeightLog()
    fitted = train([Scripted([0.1, 0.9, 0.3, 0.2]), log, KeepBestModel(monitor="valid_score", mode="max")])
    assert same(fitted.model.state_dict(), log.epochs[2])


def test_keep_best_model_after_early_stopping():
    log = WeightLog()
    fitted = train(
        [
            Scripted([2.0, 1.0, 1.5, 1.7, 0.1]),
            log,
            KeepBestModel(monitor="valid_score"),
            EarlyStopping(monitor="valid_score", patience=2),
        ],
        epochs=5,
    )
    assert len(fitted.records["metrics"]["train"]) == 4
    assert same(fitted.model.state_dict(), log.epochs[2])


def test_keep_best_model_state_round_trip():
    cb = KeepBestModel(monitor="valid_score")
    train([Scripted([3.0, 1.0]), cb], epochs=2)
    other = KeepBestModel(monitor="valid_score")
    other.load_state_dict(C.plain(cb.state_dict(), "state"))
    assert other.best == 1.0 and other.best_epoch == 2 and same(other.weights, cb.weights)


# -- ResumeFromCheckpoint -------------------------------------------------------------------------


def test_resume_from_a_directory_resolved_at_fit_begin(tmp_path):
    ckdir = str(tmp_path / "ckpts") + "/"
    # Built before the directory exists (luz issue #149).
    resume = ResumeFromCheckpoint(ckdir, restore_optimizer_state=True)
    log1 = WeightLog()
    with pytest.warns(UserWarning, match="does not exist; training starts from scratch"):
        train([resume, Scripted(SEQ), ModelCheckpoint(ckdir, monitor="valid_score"), log1], epochs=3)
    assert resume.loaded_path is None
    assert len(os.listdir(ckdir)) == 3

    class OptProbe(pyluz.Callback):
        def on_fit_begin(self):
            self.state = copy.deepcopy(self.ctx.opt.state_dict())

    log2, probe = WeightLog(), OptProbe()
    train([resume, log2, probe], epochs=1, seed=123)
    assert resume.loaded_path.endswith("epoch-03-valid_score-2.000.pt")
    assert same(log2.at_fit_begin, log1.epochs[3])
    saved = C.read_checkpoint(resume.loaded_path)["optimizers"]["opt"]
    assert torch.equal(probe.state["state"][0]["exp_avg"], saved["state"][0]["exp_avg"])


def test_resume_warns_on_an_empty_directory(tmp_path):
    with pytest.warns(UserWarning, match="has no checkpoint files"):
        train([ResumeFromCheckpoint(tmp_path)], epochs=1)


def test_resume_restores_records_and_callback_states(tmp_path):
    path = str(tmp_path / "c.pt")
    es = EarlyStopping(monitor="valid_score", patience=3)
    train([Scripted([5.0, 4.0, 4.5]), es, ModelCheckpoint(path, monitor="valid_score")], epochs=3)
    assert (es.best, es.counter) == (4.0, 1)
    es2 = EarlyStopping(monitor="valid_score", patience=3)
    probe = []

    class Probe(pyluz.Callback):
        def on_fit_begin(self):
            probe.append(len(self.ctx.records["metrics"]["train"]))

    resume = ResumeFromCheckpoint(path, restore_records=True, restore_callbacks_state=True)
    # EarlyStopping (weight inf) runs its on_fit_begin after the restore: the restored state must survive.
    with pytest.warns(UserWarning, match="state for callback ModelCheckpoint .* which this fit doesn't have"):
        train([resume, Probe(), Scripted([9.0]), es2], epochs=1)
    assert probe == [3]
    # ModelCheckpoint (weight 0) writes before EarlyStopping (weight inf) updates at epoch 3, so the file holds
    # its state after epoch 2 (best 4.0, counter 0); 9.0 then adds one epoch without improvement.
    assert es2.best == 4.0 and es2.counter == 1


def test_callback_state_without_load_state_dict_is_an_error(tmp_path):
    class OneWay(pyluz.Callback):
        def state_dict(self):
            return {"n": 1}

    path = str(tmp_path / "c.pt")
    train([OneWay(), ModelCheckpoint(path)], epochs=1)
    with pytest.raises(pyluz.CallbackError, match="callback OneWay, but it defines no `load_state_dict"):
        train([OneWay(), ResumeFromCheckpoint(path, restore_callbacks_state=True)], epochs=1)
    train([OneWay(), ResumeFromCheckpoint(path)], epochs=1)  # fine when callbacks are not restored


def test_resume_argument_errors():
    with pytest.raises(TypeError, match="`restore_records` must be True or False, got 'no'"):
        ResumeFromCheckpoint("x.pt", restore_records="no")
