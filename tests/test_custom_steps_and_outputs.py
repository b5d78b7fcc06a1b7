"""Results follow the loop contract (docs/loop.md): custom steps in fit/evaluate, predict outputs, list- and
dict-valued metrics in records, get_metrics and printing."""

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

import pyluz
from pyluz.metrics import Accuracy, MulticlassAUROC
from helpers import Net, TwoOpt, regression_data
from pyluz.metrics import format_metric_value as fmt


class StepNet(Net):
    """A module with its own step(): a Python float in ctx.loss while training, a bare tensor in validation."""

    def step(self):
        ctx = self.ctx
        ctx.pred = self(ctx.input)
        loss = nn.functional.cross_entropy(ctx.pred, ctx.target)
        if ctx.training:
            ctx.opt.zero_grad()
            loss.backward()
            ctx.opt.step()
            ctx.loss = loss.item()
        else:
            ctx.loss = loss


def manual_valid(model, x, y, batch_size=32):
    with torch.no_grad():
        model.eval()
        pred = model(x)
    losses = [
        nn.functional.cross_entropy(pred[i : i + batch_size], y[i : i + batch_size]).item()
        for i in range(0, len(x), batch_size)
    ]
    return pred, sum(losses) / len(losses)


def test_custom_step_with_float_and_bare_tensor_losses_in_fit_and_evaluate(xy):
    x, y = xy
    torch.manual_seed(0)
    fitted = (
        pyluz.setup(StepNet, optimizer=torch.optim.SGD, metrics=[Accuracy()])
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=2, valid_data=xy, verbose=False)
    )
    pred, loss = manual_valid(fitted.model, x, y)
    acc = (pred.argmax(1) == y).float().mean().item()
    assert fitted.records["metrics"]["valid"][-1] == pytest.approx({"loss": loss, "acc": acc}, abs=1e-6)
    assert isinstance(fitted.records["metrics"]["train"][0]["loss"], float)
    evaluation = fitted.evaluate(xy)  # evaluate() runs the module's step() too (ctx.training is False)
    assert evaluation["loss"] == pytest.approx(loss, abs=1e-6) and evaluation["acc"] == pytest.approx(acc, abs=1e-6)


def test_list_valued_and_duplicate_metrics_in_records_frames_and_printing(xy):
    x, y = xy
    torch.manual_seed(0)
    metrics = [Accuracy(), Accuracy(), MulticlassAUROC(from_logits=True, average="none")]
    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=metrics)
        .set_opt_hparams(lr=0.01)
        .fit(xy, epochs=2, valid_data=xy, verbose=False)
    )
    evaluation = fitted.evaluate(xy)
    pred, _ = manual_valid(fitted.model, x, y)
    probs = pred.softmax(1)
    aucs = [roc_auc_score((y == c).numpy(), probs[:, c].numpy()) for c in range(2)]
    assert evaluation["auc"] == pytest.approx(aucs, abs=0.01)  # 200-threshold grid
    assert evaluation["acc"] == evaluation["acc_2"] == pytest.approx((pred.argmax(1) == y).float().mean().item())

    frame = evaluation.get_metrics()
    assert frame["metric"].tolist() == ["loss", "acc", "acc_2", "auc_0", "auc_1"]
    assert frame["value"].tolist()[3:] == evaluation["auc"]
    fit_frame = fitted.get_metrics()
    last_valid = fit_frame[(fit_frame.set == "valid") & (fit_frame.epoch == 2)]
    assert last_valid["metric"].tolist() == ["loss", "acc", "acc_2", "auc_0", "auc_1"]
    assert last_valid["value"].tolist()[3:] == fitted.records["metrics"]["valid"][1]["auc"]
    text = repr(evaluation)
    assert f"auc_0: {fmt(evaluation['auc'][0])}\nauc_1: {fmt(evaluation['auc'][1])}" in text


def test_repr_with_several_optimizers_shows_each_loss_for_train_and_valid():
    x, y = regression_data()
    fitted = pyluz.setup(TwoOpt, loss=nn.MSELoss()).fit((x, y), epochs=1, valid_data=(x, y), verbose=False)
    text = repr(fitted)
    for set_name, title in (("train", "Training"), ("valid", "Validation")):
        loss = fitted.records["metrics"][set_name][0]["loss"]
        assert list(loss) == ["gen", "disc"]
        section = text.split(f"ℹ {title}:")[1]
        assert section.splitlines()[1] == f"loss: gen: {fmt(loss['gen'])} | disc: {fmt(loss['disc'])}"
    frame = fitted.get_metrics()
    assert frame["metric"].tolist() == ["loss_gen", "loss_disc"] * 2


def test_predict_tuple_and_dict_outputs_with_kwargs(xy):
    class TwoHeads(Net):
        def predict(self, x, scale=1.0, as_dict=False):
            out = self(x) * scale
            return {"logits": out, "total": out.sum(1)} if as_dict else (out, out.sum(1))

    x, _ = xy
    fitted = (
        pyluz.setup(TwoHeads, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=1, verbose=False)
    )
    with torch.no_grad():
        fitted.model.eval()
        expected = fitted.model(x) * 2.0
    logits, total = fitted.predict(x, scale=2.0)
    assert torch.allclose(logits, expected) and torch.allclose(total, expected.sum(1))
    as_dict = fitted.predict(x, scale=2.0, as_dict=True, dataloader_options={"batch_size": 40})
    assert set(as_dict) == {"logits", "total"} and torch.allclose(as_dict["logits"], expected)
    per_batch = fitted.predict(x, stack=False, as_dict=True, dataloader_options={"batch_size": 40})
    assert [b["logits"].shape[0] for b in per_batch] == [40, 40, 16]
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        fitted.predict(x, bogus=1)


def test_predict_dataloader_options_never_shuffle_and_honour_drop_last(xy):
    x, _ = xy
    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=1, verbose=False)
    )
    expected = fitted.predict(x)
    with pytest.warns(UserWarning, match="`shuffle=True` is ignored for predictions"):
        shuffled = fitted.predict(x, dataloader_options={"shuffle": True, "batch_size": 10})
    assert torch.allclose(shuffled, expected)  # row order kept
    dropped = fitted.predict(x, dataloader_options={"drop_last": True, "batch_size": 40})
    assert torch.allclose(dropped, expected[:80])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=40)
    with pytest.warns(UserWarning, match="`dataloader_options` are ignored because `newdata` is already a dataloader"):
        assert torch.allclose(fitted.predict(loader, dataloader_options={"batch_size": 8}), expected)


def test_valid_data_as_dataset_iterable_dataset_or_dataloader(xy):
    from torch.utils.data import DataLoader, IterableDataset, TensorDataset

    class Stream(IterableDataset):
        def __iter__(self):
            yield from zip(*xy, strict=True)

    x, y = xy
    model = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    for valid in (TensorDataset(x, y), Stream(), DataLoader(TensorDataset(x, y), batch_size=32)):
        torch.manual_seed(0)
        fitted = model.fit(xy, epochs=1, valid_data=valid, verbose=False)
        _, loss = manual_valid(fitted.model, x, y)
        assert fitted.records["metrics"]["valid"][0]["loss"] == pytest.approx(loss, abs=1e-6)
    with pytest.warns(UserWarning, match="ignored because `valid_data` is already a dataloader"):
        model.fit(xy, epochs=1, valid_data=valid, verbose=False, dataloader_options={"batch_size": 16})


def test_train_only_and_valid_only_metrics_in_fit_and_evaluate(xy):
    x, y = xy
    metrics = pyluz.MetricSet(train_metrics=[Accuracy()], valid_metrics=[MulticlassAUROC(from_logits=True)])
    torch.manual_seed(0)
    fitted = (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, metrics=metrics)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=2, valid_data=xy, verbose=False)
    )
    assert [list(e) for e in fitted.records["metrics"]["train"]] == [["loss", "acc"]] * 2
    assert [list(e) for e in fitted.records["metrics"]["valid"]] == [["loss", "auc"]] * 2
    evaluation = fitted.evaluate(xy)  # evaluate() is a validation pass: valid metrics only
    assert evaluation.get_metrics()["metric"].tolist() == ["loss", "auc"]
    pred, _ = manual_valid(fitted.model, x, y)
    micro = roc_auc_score(nn.functional.one_hot(y, 2).numpy().ravel(), pred.softmax(1).numpy().ravel())
    assert evaluation["auc"] == pytest.approx(micro, abs=0.01)
    only_train = fitted.evaluate(xy, metrics=pyluz.MetricSet(train_metrics=[Accuracy()]))
    assert only_train.get_metrics()["metric"].tolist() == ["loss"]
