"""The loop: breakpoint order, ordering by weight, control flow, error context, exactness vs hand loops."""

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pyluz
from helpers import Net, hand_loop


class Recorder(pyluz.Callback):
    """Records every fit breakpoint it sees (epoch, iter)."""

    def __init__(self, log, name="rec"):
        self.log, self.tag = log, name
        for event in pyluz.events.EVENTS:
            setattr(self, event, self._make(event))

    def _make(self, event):
        def hook():
            self.log.append(event)

        return hook


def test_breakpoints_run_in_spec_order(xy):
    x, y = xy
    log = []
    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    model.fit(
        (x[:64], y[:64]),
        epochs=2,
        valid_data=(x[64:80], y[64:80]),
        verbose=False,
        dataloader_options={"batch_size": 32},
        callbacks=[Recorder(log)],
    )
    train_batch = [
        "on_train_batch_begin",
        "on_train_batch_after_pred",
        "on_train_batch_after_loss",
        "on_train_batch_before_backward",
        "on_train_batch_before_step",
        "on_train_batch_after_step",
        "on_train_batch_end",
    ]
    valid_batch = [
        "on_valid_batch_begin",
        "on_valid_batch_after_pred",
        "on_valid_batch_after_loss",
        "on_valid_batch_end",
    ]
    epoch = (
        ["on_epoch_begin", "on_train_begin"]
        + train_batch * 2
        + ["on_train_end", "on_valid_begin"]
        + valid_batch
        + ["on_valid_end", "on_epoch_end"]
    )
    assert log == ["on_fit_begin"] + epoch * 2 + ["on_fit_end"]


def test_predict_breakpoints(xy):
    x, y = xy
    log = []
    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit((x, y), epochs=1, verbose=False)
    )
    fitted.predict(x[:40], callbacks=[Recorder(log)], dataloader_options={"batch_size": 32})
    assert log == ["on_predict_begin"] + ["on_predict_batch_begin", "on_predict_batch_end"] * 2 + ["on_predict_end"]


class Named(pyluz.Callback):
    def __init__(self, log, tag, weight=0):
        self.log, self.tag, self.weight = log, tag, weight

    def on_fit_begin(self):
        self.log.append(self.tag)


def test_callbacks_sorted_by_weight_stably(xy):
    log = []
    cbs = [Named(log, "a", 1), Named(log, "b"), Named(log, "c", -1), Named(log, "d"), Named(log, "e", float("inf"))]
    pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1).fit(
        xy, epochs=1, verbose=False, callbacks=cbs
    )
    assert log == ["c", "b", "d", "a", "e"]


def test_dispatch_table_only_holds_defining_callbacks(xy):
    seen = {}

    class Peek(pyluz.Callback):
        def on_fit_begin(self):
            table = self.ctx._hooks.table
            seen["after_pred"] = [cb.name for cb, _ in table["on_train_batch_after_pred"]]
            seen["fit_begin"] = [cb.name for cb, _ in table["on_fit_begin"]]

    pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1).fit(
        xy, epochs=1, verbose=False, callbacks=[Peek()]
    )
    assert seen["after_pred"] == []
    assert seen["fit_begin"] == ["Profile", "Progress", "Interrupt", "Peek"]


def test_class_instead_of_instance_is_a_clear_error(xy):
    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    with pytest.raises(TypeError, match="Did you forget to instantiate the callback"):
        model.fit(xy, epochs=1, verbose=False, callbacks=[Named])


def test_callback_errors_name_callback_breakpoint_epoch_iter(xy):
    class Boom(pyluz.Callback):
        def on_train_batch_end(self):
            if self.ctx.epoch == 2 and self.ctx.iter == 2:
                raise ValueError("boom")

    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    with pytest.raises(pyluz.CallbackError) as info:
        model.fit(xy, epochs=3, verbose=False, callbacks=[Boom()])
    msg = str(info.value)
    assert msg == "Error in callback Boom at on_train_batch_end (epoch 2, iter 2): ValueError: boom"
    assert isinstance(info.value.__cause__, ValueError)


# (breakpoint, how to reach it, expected "(epoch E, iter I)") with 96 rows in batches of 32.
EVERY_BREAKPOINT = [(bp, "fit", "(epoch 1, iter 1)") for bp in pyluz.events.FIT_EVENTS if "batch" in bp] + [
    ("on_fit_begin", "fit", "(epoch 0, iter 0)"),
    ("on_epoch_begin", "fit", "(epoch 1, iter 0)"),
    ("on_train_begin", "fit", "(epoch 1, iter 0)"),
    ("on_train_end", "fit", "(epoch 1, iter 3)"),
    ("on_valid_begin", "fit", "(epoch 1, iter 3)"),
    ("on_valid_end", "fit", "(epoch 1, iter 3)"),
    ("on_epoch_end", "fit", "(epoch 1, iter 3)"),
    ("on_fit_end", "fit", "(epoch 1, iter 3)"),
    ("on_early_stopping", "stop", "(epoch 1, iter 3)"),
    ("on_interrupt", "ctrl_c", "(epoch 1, iter 0)"),
    ("on_valid_batch_end", "evaluate", "(epoch 1, iter 1)"),
    ("on_valid_end", "evaluate", "(epoch 1, iter 3)"),
    ("on_predict_begin", "predict", "(epoch 1, iter 0)"),
    ("on_predict_batch_begin", "predict", "(epoch 1, iter 1)"),
    ("on_predict_batch_end", "predict", "(epoch 1, iter 1)"),
    ("on_predict_end", "predict", "(epoch 1, iter 3)"),
]


@pytest.mark.parametrize("breakpoint, run, where", EVERY_BREAKPOINT)
def test_errors_in_every_breakpoint_name_it(xy, breakpoint, run, where):
    class Boom(pyluz.Callback):
        def on_epoch_end(self):
            if run == "stop":
                raise pyluz.StopTraining()

        def on_epoch_begin(self):
            if run == "ctrl_c":
                raise KeyboardInterrupt

    def boom(self):
        raise ValueError("boom")

    setattr(Boom, breakpoint, boom)
    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    fitted = model.fit(xy, epochs=1, verbose=False) if run in ("evaluate", "predict") else None
    with pytest.raises(pyluz.CallbackError) as info:
        if run == "evaluate":
            fitted.evaluate(xy, callbacks=[Boom()])
        elif run == "predict":
            fitted.predict(xy[0], callbacks=[Boom()])
        else:
            model.fit(xy, epochs=1, valid_data=xy, verbose=False, callbacks=[Boom()])
    assert str(info.value) == f"Error in callback Boom at {breakpoint} {where}: ValueError: boom"
    assert isinstance(info.value.__cause__, ValueError) and torch.is_grad_enabled()


def test_metric_errors_name_the_metric(xy):
    class Bad(pyluz.Metric):
        abbrev = "Bad"

        def update(self, preds, target):
            raise RuntimeError("no")

        def compute(self):
            return 0.0

    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, metrics=[Bad()]).set_opt_hparams(
        lr=0.1
    )
    with pytest.raises(pyluz.CallbackError, match=r"Error in metric Bad at update \(epoch 1, iter 1\)"):
        model.fit(xy, epochs=1, verbose=False)


def test_model_errors_keep_their_type_and_say_where(xy):
    class Broken(Net):
        def forward(self, x):
            if self.ctx.iter == 3:
                raise KeyError("bad input")
            return super().forward(x)

    model = pyluz.setup(Broken, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    with pytest.raises(KeyError) as info:
        model.fit(xy, epochs=1, verbose=False)
    assert "epoch 1, iter 3" in "".join(info.value.__notes__)


def test_stop_training_finishes_epoch_end_then_early_stopping_and_fit_end(xy):
    log = []

    class Stop(pyluz.Callback):
        def on_epoch_end(self):
            log.append(("stop-check", self.ctx.epoch))
            if self.ctx.epoch == 2:
                raise pyluz.StopTraining()

    class After(pyluz.Callback):
        def on_epoch_end(self):
            log.append(("after", self.ctx.epoch))

        def on_early_stopping(self):
            log.append(("early", self.ctx.epoch))

        def on_fit_end(self):
            log.append(("fit_end", self.ctx.epoch))

    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=5, verbose=False, callbacks=[Stop(), After()])
    )
    assert log == [("stop-check", 1), ("after", 1), ("stop-check", 2), ("after", 2), ("early", 2), ("fit_end", 2)]
    assert len(fitted.records["metrics"]["train"]) == 2


def test_skip_epoch_skips_rest_of_epoch(xy):
    class Skip(pyluz.Callback):
        def on_epoch_begin(self):
            if self.ctx.epoch == 1:
                raise pyluz.SkipEpoch()

    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=3, verbose=False, callbacks=[Skip()])
    )
    train = fitted.records["metrics"]["train"]
    assert train[0] == {} and set(train[1]) == {"loss"} and set(train[2]) == {"loss"}


def test_keyboard_interrupt_returns_model_trained_so_far(xy):
    log = []

    class CtrlC(pyluz.Callback):
        def on_epoch_begin(self):
            if self.ctx.epoch == 3:
                raise KeyboardInterrupt

        def on_interrupt(self):
            log.append("interrupt")

        def on_fit_end(self):
            log.append("fit_end")

    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=10, verbose=False, callbacks=[CtrlC()])
    )
    assert log == ["interrupt", "fit_end"]
    assert len(fitted.records["metrics"]["train"]) == 2


class EndLog(pyluz.Callback):
    """Logs the breakpoints that end phases and fits, with the epoch."""

    def __init__(self, log):
        self.log = log

    def _add(self, name):
        self.log.append((name, self.ctx.epoch))

    def on_train_end(self):
        self._add("train_end")

    def on_epoch_end(self):
        self._add("epoch_end")

    def on_early_stopping(self):
        self._add("early")

    def on_interrupt(self):
        self._add("interrupt")

    def on_fit_end(self):
        self._add("fit_end")


def test_stop_training_mid_epoch_at_train_batch_end(xy):
    log = []

    class StopAtBatch(pyluz.Callback):
        def on_train_batch_end(self):
            if (self.ctx.epoch, self.ctx.iter) == (2, 1):
                raise pyluz.StopTraining()

    torch.manual_seed(0)
    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=5, verbose=False, callbacks=[StopAtBatch(), EndLog(log)], valid_data=0.25)
    )
    # Epoch 2 stops right after its first batch: no train end, validation or epoch end for it.
    assert log == [("train_end", 1), ("epoch_end", 1), ("early", 2), ("fit_end", 2)]
    assert len(fitted.records["metrics"]["train"]) == len(fitted.records["metrics"]["valid"]) == 1
    assert len(fitted.records["profile"]["epoch"]) == 1 and len(fitted.records["profile"]["fit"]) == 1


def test_stop_training_outside_epochs_ends_the_fit_cleanly(xy):
    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    for breakpoint in ("on_fit_begin", "on_early_stopping", "on_fit_end"):
        log = []

        class Stop(pyluz.Callback):
            def on_epoch_end(self, breakpoint=breakpoint):
                if breakpoint == "on_early_stopping":
                    raise pyluz.StopTraining()

        setattr(Stop, breakpoint, lambda self: (_ for _ in ()).throw(pyluz.StopTraining()))
        fitted = model.fit(xy, epochs=2, verbose=False, callbacks=[Stop(), EndLog(log)])
        epochs_run = {"on_fit_begin": 0, "on_early_stopping": 1, "on_fit_end": 2}[breakpoint]
        assert len(fitted.records["metrics"]["train"]) == epochs_run
        assert log[-1][0] == "fit_end"
        assert [n for n, _ in log].count("early") == (breakpoint != "on_fit_end")


def test_keyboard_interrupt_during_validation(xy):
    log = []

    class CtrlC(pyluz.Callback):
        def on_valid_batch_begin(self):
            if self.ctx.epoch == 2:
                raise KeyboardInterrupt

    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=4, verbose=False, callbacks=[CtrlC(), EndLog(log)], valid_data=0.25)
    )
    assert log == [("train_end", 1), ("epoch_end", 1), ("train_end", 2), ("interrupt", 2), ("fit_end", 2)]
    assert len(fitted.records["metrics"]["train"]) == 2 and len(fitted.records["metrics"]["valid"]) == 1
    assert torch.is_grad_enabled()  # the validation's no_grad did not outlive the interrupt


def test_keyboard_interrupt_at_fit_begin_after_the_handler_is_registered(xy):
    log = []

    class CtrlC(pyluz.Callback):  # runs after the default Interrupt callback registered its handler
        def on_fit_begin(self):
            raise KeyboardInterrupt

    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=2, verbose=False, callbacks=[CtrlC(), EndLog(log)])
    )
    assert log == [("interrupt", 0), ("fit_end", 0)]
    assert fitted.records["metrics"]["train"] == [] and len(fitted.records["profile"]["fit"]) == 1

    class EarlyCtrlC(CtrlC):
        weight = -1  # before Interrupt: no handler yet, so Ctrl-C propagates (as in luz)

    with pytest.raises(KeyboardInterrupt):
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).fit(
            xy, verbose=False, callbacks=[EarlyCtrlC()]
        )


def test_valid_step_sets_opt_with_opt_name(xy):
    from helpers import TwoOpt, regression_data

    seen = []

    class Spy(pyluz.Callback):
        def _see(self):
            ctx = self.ctx
            seen.append((ctx.training, ctx.opt_name, ctx.opt is ctx.optimizers[ctx.opt_name]))

        on_train_batch_after_loss = on_valid_batch_after_loss = _see

    x, y = regression_data(16)
    pyluz.setup(TwoOpt, loss=nn.MSELoss()).fit(
        (x, y), epochs=1, valid_data=(x, y), verbose=False, callbacks=[Spy()], dataloader_options={"batch_size": 16}
    )
    assert seen == [(True, "gen", True), (True, "disc", True), (False, "gen", True), (False, "disc", True)]


@pytest.mark.parametrize("as_tensors", [False, True])
def test_fit_matches_hand_written_loop(xy, as_tensors):
    x, y = xy
    torch.manual_seed(42)
    ref = Net(dropout=0.2)
    init = copy.deepcopy(ref.state_dict())
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    hand_loop(
        ref,
        opt,
        DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, drop_last=True),
        nn.CrossEntropyLoss(),
        epochs=3,
    )

    def build():
        net = Net(dropout=0.2)
        net.load_state_dict(init)
        return net

    torch.manual_seed(42)  # build() below consumes the RNG exactly as building `ref` did
    data = (x, y) if as_tensors else DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, drop_last=True)
    options = {"batch_size": 16} if as_tensors else None
    fitted = (
        pyluz.setup(build, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
        .set_opt_hparams(lr=0.01)
        .fit(data, epochs=3, verbose=False, dataloader_options=options)
    )
    for a, b in zip(ref.state_dict().values(), fitted.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


class TwoHeads(nn.Module):
    """GAN-like: two parameter groups, each with its own optimizer and loss."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 1)
        self.b = nn.Linear(4, 1)

    def forward(self, x):
        return self.a(x), self.b(x)

    def set_optimizers(self, lr_a=0.1, lr_b=0.05):
        return {
            "first": torch.optim.SGD(self.a.parameters(), lr=lr_a),
            "second": torch.optim.Adam(self.b.parameters(), lr=lr_b),
        }

    def loss(self, pred, target):
        pa, pb = pred
        if self.ctx.opt_name == "first":
            return ((pa.squeeze(1) - target) ** 2).mean() + 0.1 * (pb.squeeze(1) ** 2).mean()
        return ((pb.squeeze(1) + target) ** 2).mean() + 0.1 * (pa.squeeze(1) ** 2).mean()


def test_multiple_optimizers_match_hand_written_loop():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(64, 4, generator=g), torch.randn(64, generator=g)
    torch.manual_seed(0)
    ref = TwoHeads()
    init = copy.deepcopy(ref.state_dict())
    opts = ref.set_optimizers(lr_a=0.1, lr_b=0.05)
    names = {}

    class Ctx:  # the hand loop plays ctx for TwoHeads.loss
        opt_name = None

    ref.ctx = Ctx
    for _ in range(2):
        for i in range(0, 64, 16):
            xb, yb = x[i : i + 16], y[i : i + 16]
            for name, opt in opts.items():  # luz: forward re-run per optimizer, zero_grad after step
                Ctx.opt_name = name
                loss = ref.loss(ref(xb), yb)
                loss.backward()
                opt.step()
                opt.zero_grad()
                names[name] = True

    def build():
        m = TwoHeads()
        m.load_state_dict(init)
        return m

    fitted = (
        pyluz.setup(build)
        .set_opt_hparams(lr_a=0.1, lr_b=0.05)
        .fit((x, y), epochs=2, verbose=False, dataloader_options={"batch_size": 16, "shuffle": False})
    )
    for a, b in zip(ref.state_dict().values(), fitted.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    loss = fitted.records["metrics"]["train"][0]["loss"]
    assert set(loss) == {"first", "second"}
    assert fitted.model.ctx is None


def test_custom_step_backward_and_ctx_in_module(xy):
    seen = {"backward": 0, "steps": 0}

    class Stepper(Net):
        def step(self):
            ctx = self.ctx
            ctx.pred = self(ctx.input)
            loss = nn.functional.cross_entropy(ctx.pred, ctx.target)
            if ctx.training:
                ctx.opt.zero_grad()
                loss.backward()
                ctx.opt.step()
                seen["steps"] += 1
            ctx.loss = {"opt": loss.detach()}

    fitted = (
        pyluz.setup(Stepper, optimizer=torch.optim.SGD, metrics=[pyluz.metrics.Accuracy()])
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=2, valid_data=xy, verbose=False)
    )
    assert seen["steps"] == 2 * (96 // 32)
    assert set(fitted.records["metrics"]["valid"][1]) == {"loss", "acc"}

    def my_backward(loss):
        seen["backward"] += 1
        loss.backward()

    pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, backward=my_backward).set_opt_hparams(
        lr=0.1
    ).fit(xy, epochs=1, verbose=False)
    assert seen["backward"] == 3


def test_module_loss_method_is_used(xy):
    class WithLoss(Net):
        def loss(self, pred, target):
            return nn.functional.cross_entropy(pred, target) * 0 + 7.0

    fitted = pyluz.setup(WithLoss, optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1).fit(xy, epochs=1, verbose=False)
    assert fitted.records["metrics"]["train"][0]["loss"] == pytest.approx(7.0)


def test_epochs_pair_and_validation(xy):
    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    fitted = model.fit(xy, epochs=(1, 2), verbose=False)
    assert len(fitted.records["metrics"]["train"]) == 2
    for bad in [0, -1, (3, 2), "3", (1, 2, 3), 2.5]:
        with pytest.raises(ValueError, match="epochs"):
            model.fit(xy, epochs=bad, verbose=False)


def test_repeated_fit_does_not_leak_contexts(xy):
    import gc
    import weakref

    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.01)
    refs = []

    class Grab(pyluz.Callback):
        def on_fit_begin(self):
            refs.append(weakref.ref(self.ctx))
            refs.append(weakref.ref(self.ctx.optimizers["opt"]))

    # torch keeps the frames of its first lazy import (done by the first optimizer) alive; warm up first.
    model.fit(xy, epochs=1, verbose=False)
    gc.collect()
    gc.disable()
    try:
        # Without the GC's help (reference counting only), nothing of the runs stays alive.
        for _ in range(3):
            model.fit(xy, epochs=1, verbose=False, callbacks=[Grab()])
        assert len(refs) == 6 and all(r() is None for r in refs)
    finally:
        gc.enable()


def test_non_finite_loss_warns_once_per_fit(xy):
    import warnings

    class NanLoss(Net):
        def loss(self, pred, target):
            loss = nn.functional.cross_entropy(pred, target)
            return loss * float("nan") if self.ctx.iter == 2 else loss

    model = pyluz.setup(NanLoss, optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = model.fit(xy, epochs=3, verbose=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "not finite (epoch 1)" in messages[0] and "TerminateOnNaN" in messages[0]
    assert len(fitted.records["metrics"]["train"]) == 3  # without TerminateOnNaN training goes on


def test_metrics_are_fresh_per_epoch_and_phase(xy):
    seen = {}

    class Keep(pyluz.Callback):
        def on_train_batch_end(self):
            self._keep("train")

        def on_valid_batch_end(self):
            self._keep("valid")

        def _keep(self, phase):
            correct = (self.ctx.pred.argmax(1) == self.ctx.target).sum().item()
            entry = seen.setdefault((phase, self.ctx.epoch), [0, 0])
            entry[0] += correct
            entry[1] += len(self.ctx.target)

    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, metrics=[pyluz.metrics.Accuracy()])
        .set_opt_hparams(lr=0.5)
        .fit(xy, epochs=3, valid_data=(xy[0][:40], xy[1][:40]), verbose=False, callbacks=[Keep()])
    )
    for (phase, epoch), (correct, total) in seen.items():
        assert fitted.records["metrics"][phase][epoch - 1]["acc"] == pytest.approx(correct / total)
    accs = [fitted.records["metrics"]["train"][e]["acc"] for e in range(3)]
    assert len(set(accs)) > 1  # each epoch counts its own batches only


@pytest.mark.parametrize("signal", [pyluz.StopTraining, pyluz.SkipEpoch])
def test_fit_only_control_flow_in_predict_and_evaluate_is_a_clear_error(xy, signal):
    class Signal(pyluz.Callback):
        def on_predict_batch_end(self):
            raise signal()

        on_valid_batch_end = on_predict_batch_end

    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=1, verbose=False)
    )
    with pytest.raises(RuntimeError, match=f"{signal.__name__} was raised during predict\\(\\)"):
        fitted.predict(xy[0], callbacks=[Signal()])
    with pytest.raises(RuntimeError, match=f"{signal.__name__} was raised during evaluate\\(\\)"):
        fitted.evaluate(xy, callbacks=[Signal()])
