#!/usr/bin/env python
"""Where pyluz's per-step time goes, next to the hand-written loops of bench/run.py.

    .venv/bin/python bench/hotpath.py                # segments, ablations, micro costs
    .venv/bin/python bench/hotpath.py --cprofile     # plus cProfile of one fast-path fit

1. Segments: time stamps at every per-batch breakpoint (taken by two callbacks, one running
   first and one running last at each breakpoint) give the time of each stretch of the engine
   (fetch batch, forward, loss, backward, step + zero_grad) and of the callbacks at each
   breakpoint; the hand-written loop is stamped at the same places.
2. Ablations: whole fits (fast path), in this process only, with one piece of the engine
   replaced by a leaner version (the fix we recommend) or removed (an upper bound of its cost).
   Nothing in pyluz/ is edited: the patches are undone after each run.
3. Micro costs: single pieces timed with timeit, warm caches (a lower bound of their cost in
   the loop).

Numbers on a shared 2-core machine move by ±10%; compare within one run.
"""

import argparse
import contextlib
import cProfile
import math
import pstats
import statistics
import sys
import time
import timeit
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: data, model, variants)

import pyluz  # noqa: E402
from pyluz.callbacks import defaults as cb_defaults  # noqa: E402
from pyluz.callbacks.base import HookTable  # noqa: E402
from pyluz.events import TRAIN_BATCH_EVENTS  # noqa: E402
from pyluz.metrics import base as metrics_base  # noqa: E402

ns = time.perf_counter_ns
BATCH_BPS = list(TRAIN_BATCH_EVENTS)  # the engine's own order of the per-batch breakpoints


# -- 1. segments ----------------------------------------------------------------------------------


class Stamp(pyluz.Callback):
    """Appends (breakpoint, tag, ns) at every per-batch breakpoint."""

    def __init__(self, tag, log, weight):
        self.weight = weight
        for bp in BATCH_BPS:
            setattr(self, bp, self._stamper(bp, tag, log))

    @staticmethod
    def _stamper(bp, tag, log):
        key = (bp[len("on_train_batch_") :], tag)
        return lambda: log.append((key, ns()))


def pyluz_segments(cfg, data_fn):
    log = []
    model = bench.make_model(cfg)
    opt = bench.optimizer_factory(cfg)
    pyluz.setup(model, loss=nn.CrossEntropyLoss(), optimizer=lambda p: opt(p)).fit(
        data_fn(),
        epochs=cfg.epochs,
        verbose=False,
        callbacks=[Stamp("first", log, -math.inf), Stamp("last", log, math.inf)],
    )
    seg = {}
    for ((bp1, tag1), t1), ((bp2, tag2), t2) in zip(log, log[1:], strict=False):
        if tag1 == "first" and tag2 == "last" and bp1 == bp2:
            name = f"  callbacks at {bp1}"
        else:
            name = {
                "begin": "forward",
                "after_pred": "loss, detach, ctx.loss",
                "after_loss": "(engine)",
                "before_backward": "backward",
                "before_step": "step_opt + zero_grad",
                "after_step": "(engine)",
                "end": "next batch, ctx.batch, iter",
            }[bp1]
        seg.setdefault(name, []).append((t2 - t1) / 1000)
    return {k: statistics.median(v) for k, v in seg.items()}


def hand_segments(cfg, data, use_loader):
    model = bench.make_model(cfg)
    opt = bench.optimizer_factory(cfg)(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    x, y = data
    n, bs = x.shape[0], cfg.batch_size
    rows = []
    if use_loader:
        batches = iter(bench.make_loader(cfg, data))
    else:
        order = torch.randperm(n)
    for i in range(0, n - n % bs, bs):
        t0 = ns()
        if use_loader:
            xb, yb = next(batches)
        else:
            idx = order[i : i + bs]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        t1 = ns()
        pred = model(xb)
        t2 = ns()
        loss = loss_fn(pred, yb)
        t3 = ns()
        loss.backward()
        t4 = ns()
        opt.step()
        opt.zero_grad()
        t5 = ns()
        rows.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4))
    names = ["next batch, ctx.batch, iter", "forward", "loss, detach, ctx.loss", "backward", "step_opt + zero_grad"]
    return {name: statistics.median(col) / 1000 for name, col in zip(names, zip(*rows, strict=True), strict=True)}


def report_segments(cfg, data, repeats):
    cols = {
        "hand (b) sliced": lambda: hand_segments(cfg, data, False),
        "pyluz (d) fast": lambda: pyluz_segments(cfg, lambda: data),
        "hand (a) DL": lambda: hand_segments(cfg, data, True),
        "pyluz (c) DL": lambda: pyluz_segments(cfg, lambda: bench.make_loader(cfg, data)),
    }
    results = {k: [] for k in cols}
    for _ in range(repeats):
        for k, f in cols.items():
            results[k].append(f())
    best = {k: {seg: min(r[seg] for r in rs if seg in r) for seg in rs[0]} for k, rs in results.items()}
    order = [
        "next batch, ctx.batch, iter",
        "  callbacks at begin",
        "forward",
        "  callbacks at after_pred",
        "loss, detach, ctx.loss",
        "  callbacks at after_loss",
        "(engine)",
        "  callbacks at before_backward",
        "backward",
        "  callbacks at before_step",
        "step_opt + zero_grad",
        "  callbacks at after_step",
        "  callbacks at end",
    ]
    print("1. Per-step segments, µs (median over steps, best of", repeats, "fits; callbacks rows include the")
    print("   dispatch of two stamping callbacks, ~0.15 µs)")
    print(f"   {'segment':36}" + "".join(f"{k:>17}" for k in cols) + f"{'d-b':>8}{'c-a':>8}")
    totals = {k: 0.0 for k in cols}
    for seg in order:
        vals = {k: best[k].get(seg, 0.0) for k in cols}
        for k in cols:
            totals[k] += vals[k]
        print(
            f"   {seg:36}"
            + "".join(f"{vals[k]:17.2f}" for k in cols)
            + f"{vals['pyluz (d) fast'] - vals['hand (b) sliced']:8.2f}"
            + f"{vals['pyluz (c) DL'] - vals['hand (a) DL']:8.2f}"
        )
    print(
        f"   {'sum':36}"
        + "".join(f"{totals[k]:17.2f}" for k in cols)
        + f"{totals['pyluz (d) fast'] - totals['hand (b) sliced']:8.2f}"
        + f"{totals['pyluz (c) DL'] - totals['hand (a) DL']:8.2f}"
    )
    print()


# -- 2. ablations ---------------------------------------------------------------------------------


@contextlib.contextmanager
def patched(obj, name, value):
    old = obj.__dict__[name]
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def lean_loss_add(self, key, value):
    """Recommended LossAverage._add: one in-place op per batch; the batch count lives on the host."""
    total = self.sums.get(key)
    if total is not None and type(value) is torch.Tensor and value.dim() == 0 and value.device == total.device:
        total.add_(value)  # float32 into the float64 accumulator: no separate .to()
        self.counts[key] += 1  # a Python int (turned into a tensor only in reduce_state/compute)
        return
    lean_slow_add(self, key, value)


def lean_slow_add(self, key, value):
    if self.sums.get(key) is None:
        dev = value.device if isinstance(value, torch.Tensor) else torch.device("cpu")
        self.sums[key] = torch.zeros((), dtype=metrics_base.accum_dtype(dev), device=dev)
        self.counts[key] = 0
    total = self.sums[key]
    total.add_(value.detach().reshape(()).to(total.device) if isinstance(value, torch.Tensor) else float(value))
    self.counts[key] += 1


def lean_loss_compute(self):
    if not self.sums:
        return math.nan
    values = {k: (self.sums[k].item() / self.counts[k] if self.counts[k] else math.nan) for k in self.sums}
    return next(iter(values.values())) if len(values) == 1 else values


def lean_metrics_update(self, phase):
    """Recommended MetricsCallback._update: no grad-mode toggling per batch; metrics get a detached
    pred instead (metric state never requires grad, so no graph is built or kept)."""
    ctx = self.ctx
    pred = ctx.pred.detach() if isinstance(ctx.pred, torch.Tensor) else ctx.pred
    target = ctx.target
    for m in ctx.metrics[phase]:
        m.update(pred, target)


FOLD_EVERY = 256


def fold_loss_add(self, key, value):
    """Alternative LossAverage._add: no torch op per batch; the detached losses wait in a list and are
    summed with one stack+sum every FOLD_EVERY batches (and in compute / reduce_state)."""
    pending = self.__dict__.setdefault("pending", {})
    items = pending.get(key)
    if items is None:
        items = pending[key] = []
    items.append(value.detach() if value.requires_grad else value)
    if len(items) >= FOLD_EVERY:
        fold_pending(self, key)


def fold_pending(self, key):
    items = self.pending[key]
    if not items:
        return
    total = self.sums.get(key)
    if total is None:
        dev = items[0].device
        total = self.sums[key] = torch.zeros((), dtype=metrics_base.accum_dtype(dev), device=dev)
        self.counts[key] = 0
    total.add_(torch.stack(items).sum())
    self.counts[key] += len(items)
    items.clear()


def fold_loss_compute(self):
    for key in list(getattr(self, "pending", {})):
        fold_pending(self, key)
    return lean_loss_compute(self)


def skip_batch_hooks_call(self, name, *args):
    """Upper bound: no per-batch breakpoint dispatches anything."""
    if name.startswith("on_train_batch_"):
        return
    return ORIGINAL_CALL(self, name, *args)


ORIGINAL_CALL = HookTable.call

LEAN_LOSS = [
    (metrics_base.LossAverage, "_add", lean_loss_add),
    (metrics_base.LossAverage, "compute", lean_loss_compute),
]
FOLD_LOSS = [
    (metrics_base.LossAverage, "_add", fold_loss_add),
    (metrics_base.LossAverage, "compute", fold_loss_compute),
]
LEAN_UPDATE = [(cb_defaults.MetricsCallback, "_update", lean_metrics_update)]
ABLATIONS = [
    ("pyluz (d) as is", []),
    ("fix 1: LossAverage add_ + host count", LEAN_LOSS),
    ("fix 2: metrics get detached pred, no no_grad()", LEAN_UPDATE),
    ("fix 1 + fix 2", LEAN_LOSS + LEAN_UPDATE),
    ("fix 3: LossAverage fold every 256 + fix 2", FOLD_LOSS + LEAN_UPDATE),
    ("no metric update at all (bound)", [(cb_defaults.MetricsCallback, "on_train_batch_end", lambda self: None)]),
    ("no per-batch callbacks at all (bound)", [(HookTable, "call", skip_batch_hooks_call)]),
]


def report_ablations(cfg, data, repeats):
    def fit(runner, patches):
        with contextlib.ExitStack() as stack:
            for obj, name, value in patches:
                stack.enter_context(patched(obj, name, value))
            return runner(cfg, data)[0].cpu

    def row(label, runner, patches=()):
        return label, lambda: fit(runner, patches)

    rows = [row("hand (b) sliced tensors", bench.run_hand_sliced)]
    rows += [row(label, bench.run_pyluz_tensors, patches) for label, patches in ABLATIONS]
    rows += [
        row("hand (a) DataLoader", bench.run_hand_dataloader),
        row("pyluz (c) DataLoader as is", bench.run_pyluz_dataloader),
        row("pyluz (c) + fix 1 + fix 2", bench.run_pyluz_dataloader, LEAN_LOSS + LEAN_UPDATE),
        row("pyluz (c) + fix 3 + fix 2", bench.run_pyluz_dataloader, FOLD_LOSS + LEAN_UPDATE),
    ]
    warnings.filterwarnings("ignore", message="The loss is not finite")  # "no metric update" logs NaN
    for _, f in rows:  # warm up
        f()
    times = {label: [] for label, _ in rows}
    for _ in range(repeats):
        for label, f in rows:
            times[label].append(f() / cfg.steps * 1e6)
    print(f"2. Ablations: whole fits, CPU µs/step ({repeats} runs each, interleaved), {cfg.steps} steps")
    print(f"   {'':54} {'median':>8} {'best':>8}   best vs as is   median / hand")
    for label, _ in rows:
        med, best = statistics.median(times[label]), min(times[label])
        as_is = "pyluz (c) DataLoader as is" if "(c)" in label or "(a)" in label else "pyluz (d) as is"
        hand = "hand (a) DataLoader" if "(c)" in label or "(a)" in label else "hand (b) sliced tensors"
        print(
            f"   {label:54} {med:8.1f} {best:8.1f}   {best - min(times[as_is]):+12.1f}"
            f"   {med / statistics.median(times[hand]):12.2f}x"
        )
    print()


# -- 3. micro costs -------------------------------------------------------------------------------


def report_micro(cfg):
    from pyluz.accelerator import Accelerator
    from pyluz.callbacks.progress import Progress
    from pyluz.context import Context
    from pyluz.metrics import Accuracy, as_metric_set

    model = bench.make_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    cbs = [
        cb_defaults.Profile(),
        cb_defaults.TrainValid(),
        cb_defaults.MetricsCallback(as_metric_set(None)),
        Progress(),
        cb_defaults.Interrupt(),
    ]
    ctx = Context(
        model=model,
        accelerator=Accelerator(cpu=True),
        callbacks=cbs,
        verbose=False,
        training=True,
        optimizers={"opt": opt},
        loss_fn=nn.CrossEntropyLoss(),
        backward=None,
    )
    ctx.epoch = 1
    ctx.call_callbacks("on_train_begin")
    x, y = torch.randn(32, 32), torch.randint(0, 10, (32,))
    ctx.batch = [x, y]
    ctx.pred = model(x)
    loss = nn.functional.cross_entropy(ctx.pred, y)
    ctx.loss = {"opt": loss.detach()}
    la = ctx.metrics["train"][0]
    lean = metrics_base.LossAverage()
    lean.ctx = ctx
    lean_loss_add(lean, "opt", loss.detach())
    v = loss.detach()
    fold = metrics_base.LossAverage()
    acc_state = torch.zeros((), dtype=torch.float64)
    count = torch.zeros((), dtype=torch.int64)
    acc = Accuracy()
    pred = ctx.pred.detach()
    env = dict(
        ctx=ctx,
        la=la,
        lean=lean,
        lean_add=lean_loss_add,
        fold=fold,
        fold_add=fold_loss_add,
        v=v,
        s=acc_state,
        c=count,
        acc=acc,
        p=pred,
        y=y,
        torch=torch,
        mc=cbs[2],
        pr=cbs[3],
        b=[x, y],
        loss=loss,
        opt=opt,
    )
    cases = [
        ("call_callbacks(<breakpoint nobody defines>)", "ctx.call_callbacks('on_train_batch_after_pred')"),
        ("call_callbacks('on_train_batch_end') [Metrics, Progress]", "ctx.call_callbacks('on_train_batch_end')"),
        ("  MetricsCallback._update('train') [LossAverage only]", "mc._update('train')"),
        ("    torch.no_grad() enter + exit", "with torch.no_grad(): pass"),
        ("    LossAverage.update [as is]", "la.update(None, None)"),
        ("      v.detach().reshape(())", "v.detach().reshape(())"),
        ("      sum += v.to(float64)", "s.__iadd__(v.to(s.dtype))"),
        ("      count += 1 (int64 tensor)", "c.__iadd__(1)"),
        ("    LossAverage._add [fix 1]", "lean_add(lean, 'opt', v)"),
        ("    LossAverage._add [fix 3, amortized]", "fold_add(fold, 'opt', v)"),
        ("  Progress.on_train_batch_end (verbose=False)", "pr.on_train_batch_end()"),
        ("ctx.batch = [x, y] (setter + split_batch)", "ctx.batch = b"),
        ("ctx.loss['opt'] = loss.detach()", "ctx.loss['opt'] = loss.detach()"),
        ("Accuracy.update (d+ row of bench/run.py)", "acc.update(p, y)"),
        ("  argmax + eq + sum (the math)", "(p.argmax(1) == y).sum()"),
        ("  total += numel (int64 tensor)", "acc.total.__iadd__(32)"),
    ]
    print("3. Micro costs, µs per call (timeit, best of 5, warm caches)")
    for label, stmt in cases:
        n = 20000
        best = min(timeit.repeat(stmt, globals=env, number=n, repeat=5)) / n * 1e6
        print(f"   {label:60} {best:7.2f}")
    print()


def report_fixed(cfg, repeats):
    """Per-fit cost: fits of 4 steps, pyluz vs the hand-written loop (minus 4 steps of it)."""
    small = bench.Config(**{**cfg.__dict__, "steps": 4, "epochs": 1})
    data = bench.make_data(small)
    rows = [
        ("hand (b) sliced", bench.run_hand_sliced),
        ("pyluz (d) fast path", bench.run_pyluz_tensors),
        ("hand (a) DataLoader", bench.run_hand_dataloader),
        ("pyluz (c) DataLoader", bench.run_pyluz_dataloader),
    ]
    print("4. Fixed cost of one fit (4 steps, best of", 20 * repeats, "fits), CPU ms")
    for label, fn in rows:
        fn(small, data)
        best = min(fn(small, data)[0].cpu for _ in range(20 * repeats))
        print(f"   {label:30} {best * 1e3:7.2f}")
    print()


def report_cprofile(cfg, data):
    bench.run_pyluz_tensors(cfg, data)
    prof = cProfile.Profile()
    prof.enable()
    bench.run_pyluz_tensors(cfg, data)
    prof.disable()
    print("5. cProfile of one fast-path fit (pyluz functions, by own time; cProfile inflates small calls)")
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(r"pyluz/", 15)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--cprofile", action="store_true")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: segments,ablations,micro,fixed")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = bench.Config(steps=args.steps, optimizer=args.optimizer)
    data = bench.make_data(cfg)
    skip = set(args.skip.split(","))
    print(
        f"pyluz profile: MLP {bench.IN_FEATURES}->{bench.HIDDEN}->{bench.CLASSES}, batch {cfg.batch_size}, "
        f"{cfg.optimizer}, torch {torch.__version__}, 1 thread\n"
    )
    if "segments" not in skip:
        report_segments(cfg, data, args.repeats)
    if "ablations" not in skip:
        report_ablations(cfg, data, args.repeats)
    if "micro" not in skip:
        report_micro(cfg)
    if "fixed" not in skip:
        report_fixed(cfg, args.repeats)
    if args.cprofile:
        report_cprofile(cfg, data)


if __name__ == "__main__":
    main()
