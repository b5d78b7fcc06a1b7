"""The adapters the R front end uses (pyluz.interop): R-callable callbacks and metrics, the
progress renderer hook and error tags. Plain Python functions stand in for R closures here; the
R side is tested by rpkg/tests/testthat/test-luz-*.R."""

import threading

import pytest
import torch
from torch import nn

import pyluz
from helpers import classification_data
from pyluz.callbacks import progress as progress_mod
from pyluz.interop import errors
from pyluz.interop.callbacks import RCallback
from pyluz.interop.guard import RThreadError
from pyluz.interop.metrics import RMetric
from pyluz.interop.progress import RRenderer, use_r_renderer


def _data(n=64):
    return classification_data(n, 0, label=lambda x: (x[:, 0] > 0).long())


def _model():
    return (
        pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=4, out_features=2)
        .set_opt_hparams(lr=0.1)
    )


def test_rcallback_exposes_only_defined_breakpoints_and_sees_ctx():
    calls, bound = [], []
    cb = RCallback(
        "print_callback",
        {
            "on_epoch_end": lambda: calls.append(("epoch_end", cb.ctx.epoch)),
            "on_train_batch_end": lambda: calls.append(("batch", cb.ctx.iter)),
        },
        bind_ctx=bound.append,
    )
    assert callable(cb.on_epoch_end) and getattr(cb, "on_epoch_begin", None) is None
    assert getattr(cb, "load_state_dict", None) is None and cb.state_dict() is None
    table = pyluz.callbacks.base.HookTable([cb])
    assert [fn for _, fn in table.hooks("on_fit_begin")] == []
    assert len(table.hooks("on_epoch_end")) == 1
    x, y = _data()
    fitted = _model().fit((x, y), epochs=2, callbacks=[cb], verbose=False, dataloader_options={"batch_size": 32})
    assert calls == [("batch", 1), ("batch", 2), ("epoch_end", 1), ("batch", 1), ("batch", 2), ("epoch_end", 2)]
    # bound at fit start, cleared at the end
    assert isinstance(bound[0], pyluz.Context) and bound[-1] is None
    assert len(fitted.records["metrics"]["train"]) == 2


def test_rcallback_weight_state_and_errors():
    state = {"n": 0}
    cb = RCallback(
        "counter",
        {"on_epoch_end": lambda: state.__setitem__("n", state["n"] + 1)},
        weight=float("inf"),
        state_dict=lambda: {"n": state["n"]},
        load_state_dict=lambda s: state.update(s),
    )
    assert cb.weight == float("inf") and cb.name == "counter"
    assert cb.state_dict() == {"n": 0}
    cb.load_state_dict({"n": 5})
    assert state["n"] == 5
    with pytest.raises(ValueError, match="not a breakpoint"):
        RCallback("bad", {"epoch_end": lambda: None})
    with pytest.raises(TypeError, match="weight"):
        RCallback("bad", {}, weight="high")


def test_rcallback_error_keeps_tag_and_context():
    def boom():
        raise RuntimeError("[[rcond:7]] boom from R")

    cb = RCallback("print_callback", {"on_epoch_end": boom})
    x, y = _data()
    with pytest.raises(pyluz.CallbackError) as info:
        errors.call(_model().fit, (x, y), epochs=3, callbacks=[cb], verbose=False)
    assert "[[rcond:7]]" in str(info.value)
    last = errors.last_error()
    assert last["tag"] == 7 and last["kind"] == "callback" and last["name"] == "print_callback"
    assert last["where"] == "on_epoch_end" and last["epoch"] == 1.0 and isinstance(last["epoch"], float)
    assert last["message"].endswith("boom from R") and "[[rcond" not in last["message"]
    assert errors.call(lambda: 3) == 3 and errors.last_error() is None


def test_errors_describe_plain_python_error():
    with pytest.raises(ValueError):
        errors.call(_model().fit, _data(), epochs=0, verbose=False)
    last = errors.last_error()
    assert last["tag"] is None and last["type"] == "ValueError" and "epochs" in last["message"]
    assert errors.strip_tags("[[rcond:12]] x [[rcond:3]] y") == "x y"
    # R takes the description once: the engine then holds nothing of the failed call
    assert errors.take_error()["type"] == "ValueError"
    assert errors.last_error() is None and errors.take_error() is None


def test_guard_refuses_other_threads():
    cb = RCallback("threaded", {"on_epoch_end": lambda: None})
    caught = []

    def run():
        try:
            cb.on_epoch_end()
        except Exception as e:  # noqa: BLE001
            caught.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert isinstance(caught[0], RThreadError) and "main thread" in str(caught[0])


class _RState:
    """An 'R metric instance': state in a closure, like an R6 object."""

    created = 0

    @classmethod
    def factory(cls):
        cls.created += 1
        st = {"correct": 0, "total": 0, "ctx": None}

        def update(preds, target):
            st["correct"] += int((preds.argmax(1) == target).sum())
            st["total"] += target.numel()

        return {
            "abbrev": "RAcc",
            "update": update,
            "compute": lambda: st["correct"] / st["total"],
            "bind_ctx": lambda ctx: st.__setitem__("ctx", ctx),
            "to": lambda device: None,
        }


def test_rmetric_fresh_instance_per_epoch_and_phase_matches_builtin():
    _RState.created = 0
    template = RMetric(_RState.factory, label="my_acc")
    assert template.name == "my_acc"
    with pytest.raises(RuntimeError, match="template"):
        template.compute()
    x, y = _data(96)
    torch.manual_seed(0)
    fitted = (
        pyluz.setup(
            nn.Linear,
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.SGD,
            metrics=[template, pyluz.metrics.Accuracy()],
        )
        .set_hparams(in_features=4, out_features=2)
        .set_opt_hparams(lr=0.1)
        .fit((x, y), epochs=3, valid_data=(x[:32], y[:32]), verbose=False)
    )
    assert _RState.created == 6  # 3 epochs x (train, valid)
    for phase in ("train", "valid"):
        for rec in fitted.records["metrics"][phase]:
            assert rec["racc"] == pytest.approx(rec["acc"], abs=1e-12)


def test_rmetric_update_every_buffers_batches_and_flushes_on_compute():
    calls = []

    def factory():
        st = {"correct": 0, "total": 0}

        def update(preds, target):
            calls.append(len(target))
            assert not preds.requires_grad
            st["correct"] += int((preds.argmax(1) == target).sum())
            st["total"] += target.numel()

        return {"abbrev": "RAcc", "update": update, "compute": lambda: st["correct"] / st["total"]}

    x, y = _data(100)  # 4 batches of 25 a epoch: one flush at 3, the last batch flushed by compute()
    torch.manual_seed(0)
    fitted = (
        pyluz.setup(
            nn.Linear,
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.SGD,
            metrics=[RMetric(factory, label="racc", update_every=3), pyluz.metrics.Accuracy()],
        )
        .set_hparams(in_features=4, out_features=2)
        .set_opt_hparams(lr=0.1)
        .fit((x, y), epochs=2, verbose=False, dataloader_options={"batch_size": 25})
    )
    assert calls == [75, 25, 75, 25]
    for rec in fitted.records["metrics"]["train"]:
        assert rec["racc"] == pytest.approx(rec["acc"], abs=1e-12)


def test_rmetric_update_every_joins_nested_values_or_updates_one_by_one():
    seen = []
    parts = {"update": lambda p, t: seen.append((p, t)), "compute": lambda: 0.0}
    m = RMetric(lambda: parts, update_every=2).fresh()
    m.update({"a": torch.ones(2, 1)}, torch.zeros(2))
    m.update({"a": torch.ones(3, 1)}, torch.zeros(3))
    assert seen[0][0]["a"].shape == (5, 1) and seen[0][1].shape == (5,)
    m.update([torch.ones(1)], torch.zeros(1))
    m.compute()  # a lone pending batch
    assert isinstance(seen[1][0], list) and seen[1][0][0].shape == (1,)
    m.update(torch.ones(1), torch.zeros(1))
    m.update([torch.ones(1)], torch.zeros(1))  # structures differ: one update each
    assert len(seen) == 4
    with pytest.raises(ValueError, match="update_every"):
        RMetric(lambda: parts, update_every=0)


def test_rmetric_checks_parts():
    with pytest.raises(ValueError, match="update"):
        RMetric(lambda: {"abbrev": "x", "compute": lambda: 1.0}).fresh()
    with pytest.raises(TypeError, match="named list"):
        RMetric(lambda: [1, 2]).fresh()


def test_r_renderer_hook(capsys):
    events = []

    def factory():
        return {
            "epoch_begin": lambda e, m: events.append(("epoch", e, m)),
            "bar_begin": lambda phase, total: events.append(("bar", phase, total)),
            "epoch_metrics": lambda phase, text: events.append((phase, text)),
        }

    use_r_renderer(factory)
    try:
        assert isinstance(progress_mod.default_renderer(), RRenderer)
        x, y = _data()
        _model().fit((x, y), epochs=1, valid_data=(x, y), verbose=True, dataloader_options={"batch_size": 32})
    finally:
        use_r_renderer(None)
    assert progress_mod.renderer_factory is None
    assert events[0] == ("epoch", 1, 1) and ("bar", "train", 2) in events and ("bar", "valid", 2) in events
    assert [e[0] for e in events if e[0] in ("train", "valid")] == ["train", "valid"]
    assert events[-1][1].startswith("Loss: ")
    with pytest.raises(ValueError, match="Unknown renderer"):
        RRenderer({"draw": lambda: None})


def test_r_callback_hooks_run_without_grad():
    from pyluz.interop.callbacks import RCallback

    seen = []
    cb = RCallback("clamp", {"on_train_batch_end": lambda: seen.append(torch.is_grad_enabled())})
    cb.on_train_batch_end()
    assert seen == [False] and torch.is_grad_enabled()  # as luz: callbacks run with gradients off


# ---------------------------------------------------------------------------
# the R-torch layer's one "indices start at 1" rule
# ---------------------------------------------------------------------------


def test_one_based_rule_for_scalars_dims_and_tensors():
    import torch

    from pyluz.interop.torch_indices import dim, index, index_tensor, to_0_based, to_1_based

    assert [to_0_based(1), to_0_based(3.0), to_0_based(-1), to_0_based(-2, size=5)] == [0, 2, -1, 3]
    with pytest.raises(ValueError, match="Indexing starts at 1 but found a 0"):
        to_0_based(0)
    with pytest.raises(ValueError, match="Dimension is 1-based, but found 0"):
        dim(0)
    assert dim([1.0, -1]) == [0, -1]
    assert index_tensor(torch.tensor([1, 3, -1]), size=4).tolist() == [0, 2, 3]
    assert index(torch.tensor([2, -1])).tolist() == [1, -1]
    with pytest.raises(ValueError, match="starts at 1"):
        index_tensor(torch.tensor([1, 0]))
    assert to_1_based(torch.tensor([0, 2])).tolist() == [1, 3] and to_1_based(4) == 5


def test_r_slices_are_inclusive_and_one_based():
    import torch

    from pyluz.interop.torch_indexing import getitem

    x = torch.arange(10)
    assert getitem(x, [["slice", 2.0, 5.0, None]]).tolist() == [1, 2, 3, 4]  # x[2:5]
    assert getitem(x, [["slice", 8.0, -1.0, None]]).tolist() == [7, 8, 9]  # x[8:-1]
    assert getitem(x, [["vec", [1.0, -1.0]]]).tolist() == [0, 9]  # x[c(1, -1)]
