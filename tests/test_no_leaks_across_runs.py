"""Repeated fits (and predict/evaluate) keep nothing alive, checked with the GC disabled, so a
reference cycle through the model, optimizers, data or the ctx would show up as a live weak reference."""

import gc
import weakref

import pytest
import torch
from torch import nn

import pyluz
from pyluz import callbacks as cbs
from helpers import Net


class Grab(pyluz.Callback):
    """Keeps weak references to what a run must release."""

    def __init__(self, refs):
        self.refs = refs

    def _grab(self):
        ctx = self.ctx
        self.refs += [weakref.ref(ctx), weakref.ref(ctx.model)]
        self.refs += [weakref.ref(o) for o in ctx.optimizers.values() if o is not None]
        self.refs += [weakref.ref(d) for d in (ctx.train_data, ctx.valid_data, ctx.data) if d is not None]

    on_fit_begin = _grab
    on_valid_begin = _grab
    on_predict_begin = _grab


class StopAtFirstBatch(pyluz.Callback):
    def on_train_batch_end(self):
        raise pyluz.StopTraining()


class CtrlCInValidation(pyluz.Callback):
    def on_valid_batch_end(self):
        raise KeyboardInterrupt


class Boom(pyluz.Callback):
    def on_train_batch_end(self):
        raise ValueError("boom")


CALLBACKS = {
    "early_stopping": lambda tmp: [cbs.EarlyStopping(patience=1, min_delta=10)],
    "auto_resume": lambda tmp: [cbs.AutoResume(str(tmp / "state.pt"))],
    "step_lr": lambda tmp: [cbs.LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1)],
    "plateau": lambda tmp: [cbs.LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau)],
    "mixup": lambda tmp: [cbs.MixUp(auto_loss=True)],
    "mixed_precision": lambda tmp: [cbs.MixedPrecision()],
    "checkpoints": lambda tmp: [cbs.ModelCheckpoint(str(tmp / "ck") + "/"), cbs.KeepBestModel()],
    "gradients": lambda tmp: [cbs.GradientClip(), cbs.GradientAccumulation(2), cbs.TerminateOnNaN()],
    "csv": lambda tmp: [cbs.CSVLogger(str(tmp / "log.csv"))],
    "stop_mid_epoch": lambda tmp: [StopAtFirstBatch()],
    "ctrl_c_in_validation": lambda tmp: [CtrlCInValidation()],
    "callback_error": lambda tmp: [Boom()],
}


@pytest.fixture
def no_gc(xy):
    # torch keeps the frames of its first lazy import (done by the first optimizer) alive; warm up first.
    pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).fit(xy, epochs=1, verbose=False)
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@pytest.mark.parametrize("name", list(CALLBACKS))
def test_repeated_fits_release_everything(name, xy, tmp_path, no_gc):
    refs = []
    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.01)
    for _ in range(2):
        try:
            model.fit(xy, epochs=2, valid_data=0.25, verbose=False, callbacks=CALLBACKS[name](tmp_path) + [Grab(refs)])
        except pyluz.CallbackError:
            assert name == "callback_error"
    assert len(refs) >= 8 and [r for r in refs if r() is not None] == []


def test_predict_and_evaluate_release_their_context(xy, no_gc):
    refs = []
    fitted = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).fit(xy, epochs=1, verbose=False)
    fitted.predict(xy[0], callbacks=[Grab(refs)])
    fitted.evaluate(xy, callbacks=[Grab(refs)])
    model_ref = weakref.ref(fitted.model)
    alive = [r() for r in refs if r() is not None]
    assert all(obj is fitted.model for obj in alive)  # only the model, which the Fitted owns
    del fitted, alive
    assert model_ref() is None
