"""The probes behind cheap ctx reads from R (pyluz/interop/context_view.py)."""

import torch

from pyluz.context import Context
from pyluz.interop.context_view import FieldProbe, IntProbe, RecordsProbe


def _ctx():
    class _Acc:
        device = torch.device("cpu")

    return Context(model=None, accelerator=_Acc(), callbacks=[], verbose=False, training=True)


def test_int_probe_is_value_plus_one_or_zero():
    ctx = _ctx()
    p = IntProbe(ctx, "iter")
    assert len(p) == 1
    ctx.iter = 41
    assert len(p) == 42
    ctx.iter = 2.0  # not an int: read the usual way
    assert len(p) == 0


def test_field_probe_moves_on_new_objects_and_flags_changed_keys():
    ctx = _ctx()
    p = FieldProbe(ctx, "loss")
    first = len(p)
    assert len(p) == first  # nothing changed
    ctx.loss["opt"] = torch.tensor(1.0)
    v1 = len(p)
    assert v1 != first and v1 % 2 == 1  # keys changed ({} -> {"opt"})
    ctx.loss["opt"] = torch.tensor(2.0)
    v2 = len(p)
    assert v2 > v1 and v2 % 2 == 0  # same keys, new tensor
    assert p["opt"] is ctx.loss["opt"]
    ctx.loss = {"opt": ctx.loss["opt"]}  # a new dict with the same items
    assert len(p) > v2
    t = ctx.loss["opt"]
    t.add_(1)  # in place: the same tensor
    v3 = len(p)
    assert len(p) == v3


def test_field_probe_on_a_tensor_field_moves_per_new_tensor_only():
    ctx = _ctx()
    p = FieldProbe(ctx, "pred")
    v0 = len(p)  # None
    assert len(p) == v0
    ctx.pred = torch.ones(2)
    v1 = len(p)
    assert v1 > v0 and v1 % 2 == 1 and len(p) == v1  # not a dict: R reads the field whole
    ctx.pred.mul_(3)  # in place: the same tensor
    assert len(p) == v1
    ctx.pred = ctx.pred.clone()  # every batch
    v2 = len(p)
    assert v2 > v1 and v2 % 2 == 1
    ctx.pred = {"a": ctx.pred}  # tensor -> dict -> the same tensor again: each a change
    v3 = len(p)
    ctx.pred = ctx.pred["a"]
    assert v2 < v3 < len(p)


def test_records_probe_gives_only_changed_entries():
    ctx = _ctx()
    p = RecordsProbe(ctx)
    v0 = len(p)
    assert p.changes() is None  # first read: convert whole
    assert len(p) == v0
    ctx.epoch = 1
    ctx.log_metric("loss", 1.5)
    ctx.log("lr", "train", 0.1)
    assert len(p) != v0
    assert p.changes() == [["metrics", "train", 1, [{"loss": 1.5}]], ["lr", "train", 1, [0.1]]]
    ctx.log_metric("acc", 0.5)  # merged into entry 1
    ctx.log("x", "valid", 3, index=3)  # padded
    assert p.changes() == [["metrics", "train", 1, [{"loss": 1.5, "acc": 0.5}]], ["x", "valid", 1, [{}, {}, 3]]]
    for epoch in range(2, 300):  # the delta stays one entry, however long the records
        ctx.epoch = epoch
        ctx.log_metric("loss", 1.0)
        assert p.changes() == [["metrics", "train", epoch, [{"loss": 1.0}]]]
    ctx.records["lr"]["train"].append(9)  # changed by hand: convert whole
    assert p.changes() is None
    ctx.set_records({"metrics": {"train": [], "valid": []}})
    assert p.changes() is None
    assert p.changes() == []
