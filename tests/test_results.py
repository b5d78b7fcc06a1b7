"""Fitted/Evaluation: predict, evaluate, get_metrics, printing."""

import time

import pytest
import torch
from torch import nn

import pyluz
from helpers import Net
from pyluz.metrics import format_metric_value as fmt


@pytest.fixture
def fitted(xy):
    torch.manual_seed(0)
    return (
        pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=[pyluz.metrics.Accuracy()])
        .set_opt_hparams(lr=0.01)
        .fit(xy, epochs=3, valid_data=xy, verbose=False)
    )


def test_valid_metrics_equal_evaluate(fitted, xy):
    evaluation = fitted.evaluate(xy)
    last = fitted.records["metrics"]["valid"][-1]
    assert evaluation["loss"] == pytest.approx(last["loss"], abs=1e-6)
    assert evaluation["acc"] == pytest.approx(last["acc"], abs=1e-6)
    frame = evaluation.get_metrics()
    assert list(frame.columns) == ["metric", "value"] and frame["metric"].tolist() == ["loss", "acc"]


def test_evaluate_values_match_a_manual_computation(fitted, xy):
    x, y = xy
    with torch.no_grad():
        fitted.model.eval()
        pred = fitted.model(x)
    batches = [nn.functional.cross_entropy(pred[i : i + 32], y[i : i + 32]).item() for i in range(0, 96, 32)]
    evaluation = fitted.evaluate(xy)
    assert evaluation["loss"] == pytest.approx(sum(batches) / len(batches), abs=1e-6)  # luz: mean over batches
    assert evaluation["acc"] == pytest.approx((pred.argmax(1) == y).float().mean().item(), abs=1e-6)


def test_evaluate_metrics_override(fitted, xy):
    evaluation = fitted.evaluate(xy, metrics=[pyluz.metrics.Accuracy(), pyluz.metrics.Accuracy()])
    assert evaluation.get_metrics()["metric"].tolist() == ["loss", "acc", "acc_2"]


def test_get_metrics_frame(fitted):
    frame = fitted.get_metrics()
    assert list(frame.columns) == ["set", "metric", "epoch", "value"]
    assert len(frame) == 2 * 3 * 2
    assert frame.iloc[0].tolist()[:3] == ["train", "loss", 1]
    row = frame[(frame.set == "valid") & (frame.metric == "acc") & (frame.epoch == 3)]
    assert row["value"].item() == fitted.records["metrics"]["valid"][2]["acc"]


def test_predict_stacks_and_matches_model(fitted, xy):
    x, _ = xy
    preds = fitted.predict(x)
    with torch.no_grad():
        fitted.model.eval()
        assert torch.allclose(preds, fitted.model(x))
    per_batch = fitted.predict(x, stack=False, dataloader_options={"batch_size": 40})
    assert [p.shape[0] for p in per_batch] == [40, 40, 16]


def test_predict_kwargs_and_non_tensor_outputs(xy):
    class WithPredict(Net):
        def predict(self, x, temperature=1.0, as_dist=False):
            logits = self(x) / temperature
            if as_dist:
                return torch.distributions.Categorical(logits=logits)
            return logits.softmax(1)

    f = (
        pyluz.setup(WithPredict, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(xy, epochs=1, verbose=False)
    )
    x, _ = xy
    hot = f.predict(x, temperature=100.0)
    assert torch.allclose(hot, torch.full_like(hot, 0.5), atol=0.01)
    dists = f.predict(x, as_dist=True)
    assert isinstance(dists, list) and len(dists) == 3
    assert all(isinstance(d, torch.distributions.Categorical) for d in dists)


def test_repr_shows_train_and_valid_metrics(fitted):
    text = repr(fitted)
    assert text.startswith("Fitted: ")
    assert "Total time:" in text and "Avg time per training epoch:" in text
    last_valid = fitted.records["metrics"]["valid"][-1]
    assert "ℹ Training:" in text and "ℹ Validation:" in text
    assert f"acc: {fmt(last_valid['acc'])}" in text.split("ℹ Validation:")[1]
    assert "Net(" in text


def test_evaluation_repr(fitted, xy):
    text = repr(fitted.evaluate(xy))
    lines = text.splitlines()
    assert lines[0] == "Evaluation"
    assert lines[2].startswith("loss: ") and lines[3].startswith("acc: ")


def test_wide_metrics_are_the_long_form_one_row_per_epoch(fitted):
    wide = fitted.get_metrics(wide=True)
    assert wide.columns.tolist() == ["epoch", "train_loss", "train_acc", "valid_loss", "valid_acc"]
    assert wide.epoch.tolist() == [1, 2, 3]
    long = fitted.get_metrics()
    for row in long.itertuples(index=False):
        assert wide.loc[wide.epoch == row.epoch, f"{row.set}_{row.metric}"].item() == row.value
    assert wide.valid_acc.tolist() == [e["acc"] for e in fitted.records["metrics"]["valid"]]
    assert fitted.history.equals(wide)


def test_wide_metrics_flatten_multi_valued_metrics_and_missing_validation():
    records = {
        "metrics": {
            "train": [{"loss": {"gen": 1.0, "disc": 2.0}}, {"loss": {"gen": 3.0, "disc": 4.0}}],
            "valid": [{"loss": {"gen": 5.0, "disc": 6.0}}],
        }
    }
    wide = pyluz.results.history_frame(records)
    assert wide.columns.tolist() == ["epoch", "train_loss_gen", "train_loss_disc", "valid_loss_gen", "valid_loss_disc"]
    assert wide.train_loss_disc.tolist() == [2.0, 4.0]
    assert wide.valid_loss_gen.iloc[0] == 5.0 and wide.valid_loss_gen.isna().iloc[1]


def test_repr_uses_python_names_and_counts_parameters(fitted, xy):
    text = repr(fitted)
    n = sum(p.numel() for p in fitted.model.parameters())
    assert text.splitlines()[0] == f"Fitted: a trained Net with {n:,} parameters"
    assert "luz_module" not in text
    assert repr(fitted.evaluate(xy)).splitlines()[0] == "Evaluation"


def test_total_time_counts_the_set_up():
    built = []

    class SlowToBuild(nn.Linear):
        def __init__(self):
            super().__init__(4, 2)
            built.append(time.perf_counter())

    class FitBegins(pyluz.callbacks.Callback):
        def on_fit_begin(self):
            built.append(time.perf_counter())

    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    module = pyluz.setup(SlowToBuild, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    before = time.perf_counter()
    fitted = module.fit((x, y), epochs=1, verbose=False, callbacks=[FitBegins()])
    after = time.perf_counter()
    total = fitted.records["profile"]["fit"][0]
    built_at, begun_at = built
    # the clock started before the model was built, so the total covers building it and the loaders
    assert after - before >= total > begun_at - built_at
