#!/usr/bin/env python
"""µs per training step: hand-written PyTorch loops vs pyluz (and peers when installed).

    .venv/bin/python bench/run.py --instructions  # what `make bench` runs
    .venv/bin/python bench/run.py                 # CPU time only (fast)
    .venv/bin/python bench/run.py --repeats 7 --optimizer adam --only a,c,d

Every variant trains the same tiny MLP (32 -> 64 -> 10, ReLU, cross-entropy) on the same random
data, from the same seed, with batch 32, shuffling and dropping the last partial batch, on one CPU
thread. A variant is timed from just after the model is built until training returns, so a
framework's per-fit setup (building loaders, callbacks, a Trainer) counts; the model and the data
are built outside the timer. Each variant runs once to warm up, then `--repeats` times,
interleaved (a, b, c, ..., a, b, c, ...) so that drift of the machine hits every variant alike.

The table shows µs/step of process CPU time (on a shared machine wall time also counts the time
spent waiting for a core; its median is the "wall µs" column): the median run, the best run, the
spread ((max - min) / median), the ratio of medians to (a) and of best runs. "Same weights" says
whether the trained weights equal those of (a) bit for bit ("close": within 1e-4): the variants
that see the same batches in the same order must, which shows they do the same work (forward,
loss, backward, step, zero_grad per batch).

Adding a variant: write `def run_x(cfg, data) -> (Timing, model_or_None)` (time it with `Clock`;
raise `Skip("why")` when it can't run here) and add a row to `VARIANTS`. The R rows (pyluz from
R) are in that table too; they run `Rscript` and skip while the R package is not installed.

`--instructions` adds the deterministic measure, instructions per step counted by callgrind
for the main rows (bench/instructions.py); judge ratios at the ±5 % level on it.

This is a benchmark, not a test: it asserts nothing and always exits 0 unless it crashes.
"""

import argparse
import gc
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import instructions  # noqa: E402  (bench/instructions.py: the deterministic measure)

IN_FEATURES, HIDDEN, CLASSES = 32, 64, 10


class Clock:
    """Wall time and this process's CPU time (all its threads) since creation.

    CPU time is the table's main measure: on a shared machine it ignores the time the process
    waits for a core, which wall time counts. Both agree on an idle machine (one thread)."""

    def __init__(self):
        instructions.start()  # under `--instructions` callgrind counts exactly the timed region
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self):
        timing = Timing(time.perf_counter() - self.wall, time.process_time() - self.cpu)
        instructions.stop()
        return timing


@dataclass
class Timing:
    wall: float
    cpu: float


class Skip(Exception):
    """A variant that can't run here (package missing, ...); the message says why."""


@dataclass
class Config:
    steps: int = 2000
    epochs: int = 1
    batch_size: int = 32
    repeats: int = 5
    seed: int = 0
    optimizer: str = "sgd"
    lr: float = 0.01

    @property
    def n_rows(self):
        # drop_last: every epoch is exactly steps / epochs full batches
        return (self.steps // self.epochs) * self.batch_size


# -- shared pieces ----------------------------------------------------------------------------


def make_data(cfg):
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(cfg.n_rows, IN_FEATURES, generator=g)
    w = torch.randn(IN_FEATURES, CLASSES, generator=g)
    y = (x @ w + 0.5 * torch.randn(cfg.n_rows, CLASSES, generator=g)).argmax(1)
    return x, y


def make_model(cfg):
    """Seeds torch's RNG, then builds the model: every variant starts from the same weights and
    the same RNG state (so DataLoader shuffles agree)."""
    torch.manual_seed(cfg.seed)
    return nn.Sequential(nn.Linear(IN_FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))


def optimizer_factory(cfg):
    if cfg.optimizer == "sgd":
        return lambda params: torch.optim.SGD(params, lr=cfg.lr)
    if cfg.optimizer == "adam":
        return lambda params: torch.optim.Adam(params, lr=cfg.lr)
    raise ValueError(f"--optimizer must be sgd or adam, got {cfg.optimizer!r}")


def make_loader(cfg, data):
    return DataLoader(TensorDataset(*data), batch_size=cfg.batch_size, shuffle=True, drop_last=True)


# -- (a), (b): hand-written PyTorch ---------------------------------------------------------------


def run_hand_dataloader(cfg, data):
    model = make_model(cfg)
    loss_fn = nn.CrossEntropyLoss()
    start = Clock()
    opt = optimizer_factory(cfg)(model.parameters())
    loader = make_loader(cfg, data)
    model.train()
    for _ in range(cfg.epochs):
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
    return start.stop(), model


def run_hand_sliced(cfg, data):
    """Shuffled like the others (one randperm per epoch), each batch one index_select per tensor."""
    model = make_model(cfg)
    loss_fn = nn.CrossEntropyLoss()
    start = Clock()
    opt = optimizer_factory(cfg)(model.parameters())
    x, y = data
    n, bs = x.shape[0], cfg.batch_size
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(n)
        for i in range(0, n - n % bs, bs):
            idx = order[i : i + bs]
            loss = loss_fn(model(x.index_select(0, idx)), y.index_select(0, idx))
            loss.backward()
            opt.step()
            opt.zero_grad()
    return start.stop(), model


# -- (c), (d): pyluz ----------------------------------------------------------------------------


def _pyluz_fit(cfg, data_fn, metrics=None):
    import pyluz

    model = make_model(cfg)
    opt = optimizer_factory(cfg)
    luz = pyluz.setup(model, loss=nn.CrossEntropyLoss(), optimizer=lambda params: opt(params), metrics=metrics)
    start = Clock()
    fitted = luz.fit(data_fn(), epochs=cfg.epochs, verbose=False)
    return start.stop(), fitted.model


def run_pyluz_dataloader(cfg, data):
    return _pyluz_fit(cfg, lambda: make_loader(cfg, data))


def run_pyluz_tensors(cfg, data):
    # defaults: batch_size 32, shuffle, drop_last -> the fast path (one index op per tensor and batch)
    return _pyluz_fit(cfg, lambda: data)


def run_pyluz_tensors_acc(cfg, data):
    import pyluz

    return _pyluz_fit(cfg, lambda: data, metrics=[pyluz.metrics.Accuracy()])


def run_pyluz_tensors_resume(cfg, data):
    # (d) with AutoResume checkpointing every 100 steps inside the epochs (copy here, write in a thread)
    import pyluz

    model = make_model(cfg)
    opt = optimizer_factory(cfg)
    luz = pyluz.setup(model, loss=nn.CrossEntropyLoss(), optimizer=lambda params: opt(params))
    with tempfile.TemporaryDirectory() as tmp:
        resume = pyluz.callbacks.AutoResume(os.path.join(tmp, "state.pt"), every_n_steps=100)
        start = Clock()
        fitted = luz.fit(data, epochs=cfg.epochs, verbose=False, callbacks=[resume])
        return start.stop(), fitted.model


# -- peers, when installed ---------------------------------------------------------------------


def run_lightning(cfg, data):
    try:
        import lightning as L
    except ImportError:
        raise Skip("lightning not installed (see bench/README.md)") from None
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"lightning(\.|$)")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")

    opt_factory = optimizer_factory(cfg)

    class Lit(L.LightningModule):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.loss_fn = nn.CrossEntropyLoss()

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            return self.loss_fn(self.net(xb), yb)

        def configure_optimizers(self):
            return opt_factory(self.parameters())

    model = make_model(cfg)
    lit = Lit(model)
    start = Clock()
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=False,
    )
    trainer.fit(lit, make_loader(cfg, data))
    return start.stop(), model


def run_poutyne(cfg, data):
    try:
        import poutyne
    except ImportError:
        raise Skip("poutyne not installed (see bench/README.md)") from None
    model = make_model(cfg)
    start = Clock()
    pm = poutyne.Model(model, optimizer_factory(cfg)(model.parameters()), nn.CrossEntropyLoss())
    pm.fit_generator(make_loader(cfg, data), epochs=cfg.epochs, verbose=False)
    return start.stop(), model


# -- pyluz from R -------------------------------------------------------------------------------
# Protocol: the R script gets the data and the config from Python (a .pt file and the command-line
# arguments data.pt state.pt epochs batch_size optimizer lr seed bench_dir). It warms up with a
# short fit in the same R session (the first fit of a process pays imports and first calls), times
# its own fit from after the model is built and prints one line `BENCH_SECONDS <seconds>` (CPU
# seconds of the R process, user + system of `proc.time()`, embedded Python included). It saves
# the trained state_dict to state.pt so the weights can be compared with (a).
# Each entry of R_SCRIPTS is one R script; RETICULATE_PYTHON is this Python.

R_PRELUDE = r"""
suppressPackageStartupMessages(library(pyluz))
# The engine first: it imports torch with its own BLAS. `import("torch")` before it would bind
# torch's matrix products to R's reference BLAS (about 2x slower steps, other rounding).
invisible(pyluz_engine())
args <- commandArgs(trailingOnly = TRUE)
data_path <- args[[1]]; out_path <- args[[2]]; epochs <- as.integer(args[[3]])
batch_size <- as.integer(args[[4]]); opt_name <- args[[5]]; lr <- as.numeric(args[[6]])
seed <- as.integer(args[[7]]); bench_dir <- args[[8]]
torch_py <- reticulate::import("torch", convert = FALSE)
torch_py$set_num_threads(1L)
bench <- reticulate::import_from_path("run", path = bench_dir, convert = FALSE)
instr <- reticulate::import_from_path("instructions", path = bench_dir)
cfg <- bench$Config(epochs = epochs, batch_size = batch_size, seed = seed, optimizer = opt_name, lr = lr)
d <- torch_py$load(data_path)
x <- reticulate::py_get_item(d, "x")
y <- torch_py$add(reticulate::py_get_item(d, "y"), 1L)  # R's losses take 1-based classes
optimizer <- if (opt_name == "sgd") optim_sgd else optim_adam
warm_rows <- as.integer(min(200L * batch_size, reticulate::py_len(x)))
x_warm <- torch_py$narrow(x, 0L, 0L, warm_rows); y_warm <- torch_py$narrow(y, 0L, 0L, warm_rows)
train <- function(module, x, y, callbacks = NULL, metrics = NULL, capture = FALSE) {
  module %>%
    setup(loss = nn_cross_entropy_loss(), optimizer = optimizer, metrics = metrics) %>%
    set_opt_hparams(lr = lr) %>%
    fit(list(x, y), epochs = epochs, callbacks = callbacks, verbose = FALSE, capture = capture,
        dataloader_options = list(batch_size = batch_size))
}
cpu_seconds <- function(t) t[["user.self"]] + t[["sys.self"]]
start_clock <- function() {
  instr$start()  # counts instructions from here when run under `bench/run.py --instructions`
  proc.time()
}
report <- function(t0, fitted) {
  force(fitted)  # R is lazy: train first, then read the clock
  seconds <- cpu_seconds(proc.time() - t0)
  instr$stop()
  cat("BENCH_SECONDS", seconds, "\n")
  torch_py$save(fitted$model$state_dict(), out_path)
}
"""

# luz's get-started accuracy, written in R, on the Python model; `__METRIC_ARGS__` takes extra
# luz_metric() arguments (the rows r4 / r4k differ only there).
R_METRIC_TEMPLATE = r"""
accuracy <- luz_metric(
  abbrev = "Acc",
  initialize = function() {
    self$correct <- 0
    self$total <- 0
  },
  update = function(preds, target) {
    pred <- torch_argmax(preds, dim = 2)
    self$correct <- self$correct + (pred == target)$to(dtype = torch_float())$sum()$item()
    self$total <- self$total + pred$numel()
  },
  compute = function() self$correct / self$total__METRIC_ARGS__
)
invisible(train(bench$make_model(cfg), x_warm, y_warm, metrics = list(accuracy())))
model <- bench$make_model(cfg)
t0 <- start_clock()
report(t0, train(model, x, y, metrics = list(accuracy())))
"""


def r_metric_script(update_every=None):
    """The R script of the R-metric rows: luz's accuracy, buffering `update_every` batches if given."""
    extra = "" if update_every is None else f",\n  update_every = {int(update_every)}"
    return R_PRELUDE + R_METRIC_TEMPLATE.replace("__METRIC_ARGS__", extra)


R_SCRIPTS = {
    # a Python nn.Module (bench/run.py's make_model) trained from R with R's loss and optimizer
    "r_py_model": R_PRELUDE
    + r"""
invisible(train(bench$make_model(cfg), x_warm, y_warm))
model <- bench$make_model(cfg)  # seeds torch, builds the same initial weights as (a)
t0 <- start_clock()
report(t0, train(model, x, y))
""",
    # the same MLP as an R nn_module: forward runs R closures every batch
    "r_r_model": R_PRELUDE
    + r"""
mlp <- nn_module(
  "MLP",
  initialize = function() {
    self$fc1 <- nn_linear(32, 64)
    self$fc2 <- nn_linear(64, 10)
  },
  forward = function(x) self$fc2(nnf_relu(self$fc1(x)))
)
invisible(train(mlp, x_warm, y_warm))
torch_manual_seed(seed)
t0 <- start_clock()
report(t0, train(mlp, x, y))
""",
    # the same R nn_module with capture = TRUE: its forward traced once, then replayed without R
    "r_r_model_capture": R_PRELUDE
    + r"""
mlp <- nn_module(
  "MLP",
  initialize = function() {
    self$fc1 <- nn_linear(32, 64)
    self$fc2 <- nn_linear(64, 10)
  },
  forward = function(x) self$fc2(nnf_relu(self$fc1(x)))
)
invisible(train(mlp, x_warm, y_warm, capture = TRUE))
torch_manual_seed(seed)
t0 <- start_clock()
report(t0, train(mlp, x, y, capture = TRUE))
""",
    # the Python model plus an R callback on every train batch (one R call per step)
    "r_r_callbacks": R_PRELUDE
    + r"""
count_batches <- luz_callback(
  "count_batches",
  initialize = function() self$n <- 0,
  on_train_batch_end = function() self$n <- self$n + 1
)
invisible(train(bench$make_model(cfg), x_warm, y_warm, callbacks = list(count_batches())))
model <- bench$make_model(cfg)
t0 <- start_clock()
report(t0, train(model, x, y, callbacks = list(count_batches())))
""",
    # the Python model plus a metric written in R (luz's get-started accuracy): update() per batch
    "r_r_metric": r_metric_script(),
    # the same R metric with update_every = 8: one R update per 8 batches, on their concatenation
    "r_r_metric_k": r_metric_script(update_every=8),
    # the Python model plus an R callback reading ctx$loss every train batch
    "r_r_ctx_loss": R_PRELUDE
    + r"""
read_loss <- luz_callback(
  "read_loss",
  on_train_batch_end = function() self$last <- ctx$loss
)
invisible(train(bench$make_model(cfg), x_warm, y_warm, callbacks = list(read_loss())))
model <- bench$make_model(cfg)
t0 <- start_clock()
report(t0, train(model, x, y, callbacks = list(read_loss())))
""",
}


def _r_ready():
    if shutil.which("Rscript") is None:
        return "Rscript not found"
    ok = (
        subprocess.run(
            ["Rscript", "-e", "quit(status = !requireNamespace('pyluz', quietly = TRUE))"], capture_output=True
        ).returncode
        == 0
    )
    return None if ok else "R package pyluz not installed (R CMD INSTALL rpkg)"


def _run_r(key):
    def run(cfg, data):
        why = _r_ready()
        if why:
            raise Skip(why)
        script = R_SCRIPTS.get(key)
        if script is None:
            raise Skip("R script not written yet (bench/run.py: R_SCRIPTS)")
        with tempfile.TemporaryDirectory() as tmp:
            data_path, out_path, r_path = (os.path.join(tmp, f) for f in ("data.pt", "state.pt", "bench.R"))
            torch.save({"x": data[0], "y": data[1]}, data_path)
            Path(r_path).write_text(script)
            env = dict(os.environ, RETICULATE_PYTHON=sys.executable, OMP_NUM_THREADS="1")
            args = [
                data_path,
                out_path,
                str(cfg.epochs),
                str(cfg.batch_size),
                cfg.optimizer,
                str(cfg.lr),
                str(cfg.seed),
                str(Path(__file__).resolve().parent),
            ]
            proc = subprocess.run(["Rscript", r_path, *args], capture_output=True, text=True, env=env)
            if proc.returncode != 0:  # the R package is young: report, don't stop the other rows
                lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
                raise Skip("Rscript failed: " + " | ".join(lines[-3:])[:300])
            seconds = [float(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("BENCH_SECONDS")]
            if not seconds:
                raise RuntimeError(f"Rscript printed no BENCH_SECONDS line:\n{proc.stdout[-2000:]}")
            model = None
            if os.path.exists(out_path):
                model = make_model(cfg)
                state = torch.load(out_path, weights_only=True)
                ours = model.state_dict()
                if list(state) != list(ours):  # an R nn_module names its layers fc1, fc2: match by position
                    if [v.shape for v in state.values()] != [v.shape for v in ours.values()]:
                        raise RuntimeError(f"R model's state_dict does not match the MLP: {list(state)}")
                    state = dict(zip(ours, state.values(), strict=True))
                model.load_state_dict(state)
            return Timing(wall=seconds[-1], cpu=seconds[-1]), model

    return run


# -- the table ----------------------------------------------------------------------------------
# (key, label, function, compare weights with (a)?)

VARIANTS = [
    ("a", "hand-written loop, DataLoader(TensorDataset)", run_hand_dataloader, True),
    ("b", "hand-written loop, sliced tensors", run_hand_sliced, False),
    ("c", "pyluz, DataLoader", run_pyluz_dataloader, True),
    ("d", "pyluz, in-memory tensors (fast path)", run_pyluz_tensors, True),
    ("d+", "pyluz, in-memory tensors + Accuracy metric", run_pyluz_tensors_acc, True),
    ("dr", "pyluz, in-memory tensors + AutoResume every 100 steps", run_pyluz_tensors_resume, True),
    ("lt", "PyTorch Lightning, DataLoader", run_lightning, True),
    ("po", "poutyne, DataLoader", run_poutyne, True),
    # pyluz from R: placeholders until rpkg and the scripts in R_SCRIPTS exist.
    ("r1", "pyluz from R, Python model", _run_r("r_py_model"), True),
    ("r2", "pyluz from R, R model", _run_r("r_r_model"), True),
    ("r2c", "pyluz from R, R model, capture = TRUE", _run_r("r_r_model_capture"), True),
    ("r3", "pyluz from R, R callbacks", _run_r("r_r_callbacks"), True),
    ("r4", "pyluz from R, R metric (luz accuracy)", _run_r("r_r_metric"), True),
    ("r4k", "pyluz from R, R metric, update_every = 8", _run_r("r_r_metric_k"), True),
    ("r5", "pyluz from R, R callback reading ctx$loss", _run_r("r_r_ctx_loss"), True),
]
TARGETS = {"c": ("<=", 1.10), "d": ("<", 1.00)}
# Targets between two rows: (row, other row, ratio row / other row must not exceed).
PAIR_TARGETS = [("r2c", "r1", 1.30)]
# The rows `--instructions` counts (each costs a minute or two under valgrind).
INSTRUCTION_ROWS = ("a", "b", "c", "d", "dr", "r1", "r2", "r2c")


def run_child(key, cfg):
    """One variant in this process: a short warm-up, then the measured run (`--child`)."""
    fn = {k: f for k, _, f, _ in VARIANTS}[key]
    torch.set_num_threads(1)
    warm = Config(**{**cfg.__dict__, "steps": 20 * cfg.epochs})
    fn(warm, make_data(warm))
    fn(cfg, make_data(cfg))


def count_instructions(keys, cfg, log):
    """Instructions per step of each row, counted by callgrind in a child process (see
    bench/instructions.py); a row that can't be counted gets the reason instead."""
    why = instructions.unavailable()
    if why:
        return {k: why for k in keys}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        # PYTHONHASHSEED: set iteration orders (and so the instructions they take) are the same every run
        env = dict(
            os.environ,
            OMP_NUM_THREADS="1",
            PYTHONHASHSEED="0",
            **{instructions.LIB_ENV: instructions.build_toggle(tmp)},
        )
        for key in keys:
            log(f"counting instructions of ({key}) under valgrind ...")
            argv = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                key,
                "--steps",
                str(cfg.steps),
                "--epochs",
                str(cfg.epochs),
                "--batch-size",
                str(cfg.batch_size),
                "--optimizer",
                cfg.optimizer,
                "--lr",
                str(cfg.lr),
            ]
            try:
                n, _ = instructions.count(argv, env=env)
                out[key] = n / cfg.steps
            except RuntimeError as e:
                out[key] = str(e)
    return out


def load_average():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


LOAD_AT_START = load_average()


def same_weights(m1, m2):
    """ "yes" (bit for bit), "close" (within 1e-4: same batches, rounding differs) or "no"."""
    s1, s2 = m1.state_dict(), m2.state_dict()
    if s1.keys() != s2.keys():
        return "no"
    if all(torch.equal(s1[k], s2[k]) for k in s1):
        return "yes"
    if all(torch.allclose(s1[k], s2[k], rtol=1e-4, atol=1e-5) for k in s1):
        return "close"
    return "no"


def one_run(fn, cfg, data):
    gc.collect()
    return fn(cfg, data)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=Config.steps)
    p.add_argument("--epochs", type=int, default=Config.epochs)
    p.add_argument("--batch-size", type=int, default=Config.batch_size)
    p.add_argument("--repeats", type=int, default=Config.repeats)
    p.add_argument("--optimizer", default=Config.optimizer, choices=["sgd", "adam"])
    p.add_argument("--lr", type=float, default=Config.lr)
    p.add_argument("--only", help="comma-separated variant keys, e.g. a,c,d")
    p.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per step under valgrind (deterministic; rows " + ",".join(INSTRUCTION_ROWS) + ")",
    )
    p.add_argument("--instr-steps", type=int, default=200, help="steps of the counted runs (default 200)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one variant (under valgrind)
    args = p.parse_args(argv)
    if args.steps % args.epochs:
        p.error("--steps must be a multiple of --epochs")
    cfg = Config(
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        repeats=args.repeats,
        optimizer=args.optimizer,
        lr=args.lr,
    )

    if args.child:
        run_child(args.child, cfg)
        return 0

    torch.set_num_threads(1)
    data = make_data(cfg)
    variants = [v for v in VARIANTS if not args.only or v[0] in args.only.split(",") or v[0] == "a"]

    warm = Config(**{**cfg.__dict__, "steps": 200 * cfg.epochs, "repeats": 1})
    warm_data = make_data(warm)
    active, skipped = [], {}
    for key, label, fn, compare in variants:
        try:
            one_run(fn, warm, warm_data)
            active.append((key, label, fn, compare))
        except Skip as e:
            skipped[key] = (label, str(e))

    times = {key: [] for key, *_ in active}
    models = {}
    for r in range(cfg.repeats):
        order = active[r % len(active) :] + active[: r % len(active)]  # rotate: no variant always runs first
        for key, _label, fn, _compare in order:
            seconds, model = one_run(fn, cfg, data)
            times[key].append(seconds)
            models[key] = model

    instr = {}
    if args.instructions:
        icfg = Config(**{**cfg.__dict__, "steps": args.instr_steps})
        keys = [k for k, *_ in active if k in INSTRUCTION_ROWS]
        instr = count_instructions(keys, icfg, log=lambda m: print(m, file=sys.stderr))

    print(
        f"pyluz bench: MLP {IN_FEATURES}->{HIDDEN}->{CLASSES}, batch {cfg.batch_size}, {cfg.steps} steps "
        f"({cfg.epochs} epoch(s)), {cfg.optimizer} lr={cfg.lr}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread, {cfg.repeats} timed runs each after 1 warm-up"
    )
    print(f"load average at start/end: {LOAD_AT_START} / {load_average()}")
    head = (
        f"{'':3} {'variant':46} {'µs/step':>8} {'best':>7} {'spread':>7} {'× (a)':>6} {'best×(a)':>8}"
        f" {'wall µs':>8}" + (f" {'kinstr/step':>11} {'i×(a)':>6}" if instr else "") + "  same weights as (a)"
    )
    print(head)
    print("-" * len(head))
    cpu = {k: [t.cpu for t in ts] for k, ts in times.items()}
    base, base_best = statistics.median(cpu["a"]), min(cpu["a"])
    rows = {}
    for key, label, _fn, compare in variants:
        if key in skipped:
            print(f"{key:3} {label:46} skipped: {skipped[key][1]}")
            continue
        ts = cpu[key]
        med, best = statistics.median(ts), min(ts)
        wall = statistics.median(t.wall for t in times[key])
        spread = (max(ts) - best) / med if med else 0.0
        rows[key] = (med / base, best / base_best)
        if key == "a":
            same = "-"
        elif not compare or models.get(key) is None:
            same = "n/a"
        else:
            same = same_weights(models[key], models["a"])
        us = 1e6 / cfg.steps
        icol = ""
        if instr:
            n, base_n = instr.get(key), instr.get("a")
            if isinstance(n, float):
                ratio = f"{n / base_n:5.3f}x" if isinstance(base_n, float) else "     -"
                icol = f" {n / 1e3:11.1f} {ratio:>6}"
            else:
                icol = f" {'-':>11} {'-':>6}"
        print(
            f"{key:3} {label:46} {med * us:8.1f} {best * us:7.1f} {spread * 100:6.1f}% "
            f"{rows[key][0]:5.2f}x {rows[key][1]:7.2f}x {wall * us:8.1f}{icol}  {same}"
        )
    print()
    print(
        "µs/step: median over runs of (process CPU time of the run / steps); best: the fastest run; spread: "
        "(max - min) / median;"
    )
    print(
        "× (a): ratio of medians to (a); best×(a): ratio of the best runs; wall µs: median wall time per step "
        "(counts waiting for a core)."
    )
    print(
        "Same weights: trained weights equal (a)'s bit for bit (yes) or within 1e-4 (close): same batches, "
        "same work; (b) draws its own shuffle (n/a)."
    )
    if instr:
        print(
            f"kinstr/step: thousands of instructions per step counted by callgrind over {args.instr_steps} "
            "steps of the timed region (fit set-up included), after a warm-up in the same process; "
            "i×(a): ratio to (a). Deterministic: judge ratios at the ±5 % level on these."
        )
        for key, why in instr.items():
            if not isinstance(why, float):
                print(f"  ({key}) not counted: {why}")
    for key, (op, target) in TARGETS.items():
        if key in rows:
            med_ratio, best_ratio = rows[key]
            ok = med_ratio <= target if op == "<=" else med_ratio < target
            print(
                f"target ({key}) {op} {target:.2f}x (a): {med_ratio:.2f}x median, {best_ratio:.2f}x best  "
                f"{'met' if ok else 'MISSED'}"
            )
    for key, other, target in PAIR_TARGETS:
        if key in rows and other in rows:
            ratio = rows[key][0] / rows[other][0]
            n, m = instr.get(key), instr.get(other)
            counted = f", {n / m:.2f}x in instructions" if isinstance(n, float) and isinstance(m, float) else ""
            print(
                f"target ({key}) <= {target:.2f}x ({other}): {ratio:.2f}x median CPU time{counted}  "
                f"{'met' if ratio <= target else 'MISSED'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
