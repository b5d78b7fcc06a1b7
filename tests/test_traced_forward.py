"""TracedForward (pyluz/interop/capture.py) on plain Python modules: replay equals eager bit for bit,
the trace leaves RNG, buffers and input as they were, host reads fall back, the cap, invalidation;
and the TraceForward callback in a fit. The R front end's hazards are tested in rpkg's test-capture.R."""

import pytest
import torch
from torch import nn

import pyluz
from pyluz.interop.capture import TRACED, TracedForward, field_assigned


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))


def train(traced, device="cpu", steps=6):
    model = net().to(device)
    if traced:
        tf = TracedForward(model)
        model.__dict__["forward"] = tf
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(5)
    for i in range(steps):
        n = 16 if i < steps - 1 else 5  # a last partial batch: a second key
        x = torch.randn(n, 4, generator=g).to(device)
        y = torch.randint(0, 3, (n,), generator=g).to(device)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(torch.ones(2, 4, device=device))
    return model, out, tf if traced else None


def check_replay_equals_eager(device):
    eager, out_e, _ = train(False, device)
    traced, out_t, tf = train(True, device)
    for (name, a), b in zip(eager.state_dict().items(), traced.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # weights, running stats, num_batches_tracked
    assert torch.equal(out_e, out_t)
    assert list(tf.report.values()) == [TRACED] * 3
    assert set(tf.report) == {"train, input [16, 4]", "train, input [5, 4]", "eval (no grad), input [2, 4]"}
    assert tf.traced_count == 3


def test_replay_equals_eager_bit_for_bit_with_batchnorm_and_dropout():
    check_replay_equals_eager("cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_replay_equals_eager_on_cuda():
    check_replay_equals_eager("cuda")


def test_replay_does_not_enter_the_forward():
    calls = []

    class Counted(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            calls.append(1)
            return self.fc(x) * 2

    m = Counted()
    tf = TracedForward(m)
    x = torch.randn(4, 3)
    for _ in range(3):
        assert torch.equal(tf(x), m.fc(x) * 2)
    assert len(calls) == 1  # the trace; the real first call and the others replay


def test_trace_restores_rng_buffers_and_input():
    class Mutating(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("seen", torch.zeros(3))

        def forward(self, x):
            self.seen.add_(x.sum(0))
            x.mul_(2)  # an in-place edit of the input, replayed on the real call
            return torch.nn.functional.dropout(x, 0.5) + torch.rand(3)

    m = Mutating()
    x = torch.ones(2, 3)
    torch.manual_seed(11)
    expected_eager = Mutating()(x.clone())  # eager: one pass from this RNG state
    torch.manual_seed(11)
    out = TracedForward(m)(x)
    assert torch.equal(out, expected_eager)
    assert torch.equal(m.seen, torch.full((3,), 2.0))  # updated once, not twice
    assert torch.equal(x, torch.full((2, 3), 2.0))  # doubled once, not twice
    torch.manual_seed(11)
    Mutating()(torch.ones(2, 3))
    after_eager = torch.rand(1)
    torch.manual_seed(11)
    TracedForward(Mutating())(torch.ones(2, 3))
    assert torch.equal(torch.rand(1), after_eager)  # the trace drew nothing from the RNG


@pytest.mark.parametrize(
    ("read", "reason"),
    [
        (lambda y: y.sum().item(), "`$item()`"),
        (lambda y: float(y.detach().numpy().sum()), "`as_array()`"),
        (lambda y: 1.0 if bool(y.sum() > 0) else 0.0, "`if`"),
        (lambda y: y.sum().tolist(), "tolist"),
    ],
)
def test_a_host_read_falls_back_with_its_reason(read, reason):
    class Reads(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            y = self.fc(x)
            return y * (1 + 0 * read(y))

    m = Reads()
    tf = TracedForward(m)
    x = torch.randn(2, 3)
    assert torch.equal(tf(x), m.fc(x))
    (why,) = tf.report.values()
    assert "reads a value back to the host" in why and reason in why
    assert tf.programs == {next(iter(tf.programs)): None}


def test_inspect_names_the_submodule_and_its_reason():
    m = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    tf = TracedForward(m, inspect=lambda sub: "prints (`cat()`)" if isinstance(sub, nn.ReLU) else None)
    x = torch.randn(3, 2)
    assert torch.equal(tf(x), m(x))
    assert list(tf.report.values()) == ["eager: `1`: prints (`cat()`)"]
    (record,) = tf.records.values()
    assert (record.status, record.reason, record.traces, record.replays, record.eager_calls) == (
        "eager",
        "`1`: prints (`cat()`)",
        0,
        0,
        1,
    )


def test_the_number_of_programs_is_capped():
    m = nn.Linear(3, 2)
    tf = TracedForward(m, max_programs=2)
    for n in (1, 2, 3, 1):
        x = torch.randn(n, 3)
        assert torch.equal(tf(x), m(x))
    assert tf.traced_count == 2
    assert list(tf.report.values())[:2] == [TRACED, TRACED]
    assert "more than 2 input signatures" in tf.report["train, input [3, 3]"]


def test_invalidate_drops_programs_and_field_assigned_finds_them():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = 1.0

        def forward(self, x):
            return x * self.scale

    m = Scaled()
    tf = TracedForward(m)
    x = torch.ones(2)
    assert torch.equal(tf(x), x)
    m.scale = 3.0
    assert torch.equal(tf(x), x)  # frozen at trace time: why the R front end reports assignments
    field_assigned(m)
    assert tf.programs == {}
    assert tf.dropped == ["a module field was assigned after tracing"]
    assert tf.report == {"train, input [2]": "dropped: a module field was assigned after tracing"}
    assert "no program in use" in tf.summary()
    assert torch.equal(tf(x), 3 * x)
    (record,) = tf.records.values()
    assert (record.status, record.reason, record.traces, record.drops, record.replays) == ("traced", None, 2, 1, 3)
    assert tf.summary() == "1 program in use; train, input [2]: traced (2 traces, 1 drop, 3 replays)"


def test_invalidate_keeps_eager_keys_eager_and_says_nothing_when_nothing_was_held():
    tf = TracedForward(nn.Linear(2, 2), inspect=lambda sub: "prints (`cat()`)")
    tf(torch.randn(3, 2))
    assert tf.invalidate() is False  # no program: nothing dropped, no re-inspection at every assignment
    assert tf.dropped == [] and tf.report == {"train, input [3, 2]": "eager: prints (`cat()`)"}


def test_keys_differing_only_in_dtype_are_reported_apart():
    tf = TracedForward(nn.ReLU())
    tf(torch.randn(2, 3))
    tf(torch.randn(2, 3, dtype=torch.float64).requires_grad_())
    tf(torch.ones(2, 3, dtype=torch.int64))
    assert tf.report == {
        "train, input [2, 3]": "traced",
        "train, input [2, 3] float64 (requires grad)": "traced",
        "train, input [2, 3] int64": "traced",
    }


def test_trace_forward_callback_fit_equals_eager_and_puts_the_forward_back():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(80, 4, generator=g), torch.randint(0, 3, (80,), generator=g)

    def fit(callbacks):
        torch.manual_seed(2)
        mod = pyluz.setup(net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
        return mod.fit((x, y), epochs=2, verbose=False, valid_data=(x[:20], y[:20]), callbacks=callbacks)

    trace = pyluz.callbacks.TraceForward(only_r=False)
    eager, traced = fit([]), fit([trace])
    for a, b in zip(eager.model.state_dict().values(), traced.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert set(trace.report.values()) == {TRACED}
    assert "forward" not in traced.model.__dict__
    skipped = pyluz.callbacks.TraceForward()  # only R-defined models by default
    fit([skipped])
    assert skipped.report == {}


def test_predict_and_evaluate_replay_the_fits_programs_and_equal_eager():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(80, 4, generator=g), torch.randint(0, 3, (80,), generator=g)
    torch.manual_seed(2)
    mod = pyluz.setup(net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
    trace = pyluz.callbacks.TraceForward(only_r=False)
    fitted = mod.fit((x, y), epochs=1, verbose=False, valid_data=(x[:32], y[:32]), callbacks=[trace])
    assert fitted.capture is trace
    valid_key = "eval (no grad), input [32, 4]"
    replays = trace.traced.records[next(k for k in trace.traced.records if not k[0])].replays
    newdata = x[:50]  # batches of 32 and 18: the first key was traced during validation
    eager = fitted.predict(newdata, verbose=False, capture=False)
    assert trace.traced.records[next(k for k in trace.traced.records if not k[0])].replays == replays
    replayed = fitted.predict(newdata, verbose=False)
    assert torch.equal(eager, replayed)
    assert "forward" not in fitted.model.__dict__
    report = trace.report
    assert report[valid_key] == "traced" and report["eval (no grad), input [18, 4]"] == "traced"
    frame = fitted.capture_frame().set_index("key")
    assert frame.loc[valid_key, "replays"] == replays + 1 and frame.loc[valid_key, "traces"] == 1
    e_eager = fitted.evaluate((newdata, y[:50]), verbose=False, capture=False)["loss"]
    e_traced = fitted.evaluate((newdata, y[:50]), verbose=False)["loss"]
    assert e_eager == e_traced
    assert fitted.capture_frame().set_index("key").loc[valid_key, "replays"] == replays + 2
    assert "forward" not in fitted.model.__dict__


def test_predict_capture_true_without_a_traced_fit_and_the_forward_put_back_after_an_error():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 4, generator=g), torch.randint(0, 3, (40,), generator=g)
    fitted = pyluz.setup(net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).fit(
        (x, y), epochs=1, verbose=False
    )
    assert fitted.capture is None and fitted.capture_frame() is None
    eager = fitted.predict(x, verbose=False)
    assert torch.equal(fitted.predict(x, verbose=False, capture=True), eager)
    assert set(fitted.capture.report.values()) == {TRACED}
    with pytest.raises(pyluz.control.InputMismatchError):
        fitted.predict(torch.randn(5, 7), verbose=False)  # wrong width: the forward fails
    assert "forward" not in fitted.model.__dict__
    with pytest.raises(TypeError, match="capture"):
        fitted.predict(x, verbose=False, capture="yes")
