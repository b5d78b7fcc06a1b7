"""DDP check: 2 gloo ranks with per-rank batch b train like one process with batch 2b.

Run by `make test-ddp`:

    .venv/bin/torchrun --standalone --nproc_per_node=2 tests/distributed/ddp_check.py

Every rank runs each DDP fit, then computes the single-process reference itself (pyluz fit with the
global batch, with the launcher's WORLD_SIZE hidden so no DDP is used) and compares final weights and
recorded metrics within 1e-5. Rank 0 prints one line per check and `ddp: P passed, F failed`; every
rank exits 1 when a check failed. An unexpected error ends the process at once (torchrun then stops
the other rank), so a broken collective cannot hang the run.
"""

import contextlib
import io
import os
import sys
import tempfile
import traceback
import warnings

os.environ.setdefault("PYLUZ_DDP_TIMEOUT", "120")  # a peer that never arrives fails fast

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

import pyluz  # noqa: E402
from pyluz import distributed  # noqa: E402
from pyluz.metrics import Accuracy  # noqa: E402

TOL = 1e-5
B = 8  # per-rank batch size
SEED = 2024


# -- data and models -------------------------------------------------------------------------


def make_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()  # 3 classes
    return x, y


X, Y = make_data(100, 0)  # 100 rows: batch 16 drops 4 rows, as 2 x 50 rows with batch 8 do
XV, YV = make_data(40, 1)  # 40 validation rows: the last global batch (8 rows) splits 4 + 4


class Net(nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.head(self.body(x))


class StepNet(Net):
    """luz-style module: its own loss(), optimizers and step(), reading self.ctx."""

    seen_ctx = False

    def loss(self, pred, target):
        return nn.functional.cross_entropy(pred, target)

    def set_optimizers(self, lr):
        return torch.optim.SGD(self.parameters(), lr=lr, momentum=0.9)

    def step(self):
        ctx = self.ctx  # model.ctx reaches the module inside the DDP wrapper
        StepNet.seen_ctx = ctx is not None
        ctx.loss = {}
        pred = ctx.model(ctx.input)  # through DDP: gradients are averaged
        loss = self.loss(pred, ctx.target)
        ctx.loss["opt"] = loss.detach()
        ctx.pred = pred
        if ctx.training:
            ctx.opt.zero_grad()
            loss.backward()
            ctx.opt.step()


class TwoOpt(Net):
    """Two optimizers: the default step runs forward/backward once per optimizer."""

    def set_optimizers(self, lr):
        return {
            "body": torch.optim.SGD(self.body.parameters(), lr=lr),
            "head": torch.optim.Adam(self.head.parameters(), lr=lr / 10),
        }


class Rows(Dataset):
    """A map-style Dataset that is not a TensorDataset, so pyluz builds a DataLoader for it."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def classifier(module=Net, lr=0.05):
    return pyluz.setup(
        module, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=[Accuracy()]
    ).set_opt_hparams(lr=lr)


@contextlib.contextmanager
def single_process():
    """Hide the launcher's WORLD_SIZE: pyluz then fits without DDP (the reference)."""
    saved = os.environ.pop("WORLD_SIZE")
    try:
        yield
    finally:
        os.environ["WORLD_SIZE"] = saved


def fit(luz_module, data, batch_size, **kwargs):
    torch.manual_seed(SEED)
    options = None if batch_size is None else {"batch_size": batch_size}  # None: `data` is a DataLoader
    return luz_module.fit(data, epochs=3, verbose=False, dataloader_options=options, **kwargs)


# -- comparisons -----------------------------------------------------------------------------


def compare_fits(ddp, ref, problems):
    world = distributed.world_size()
    if isinstance(ddp.model, nn.parallel.DistributedDataParallel):
        problems.append("Fitted.model is the DDP wrapper, not the module")
    for name, p in ref.model.state_dict().items():
        d = (ddp.model.state_dict()[name] - p).abs().max().item()
        if not d <= TOL:
            problems.append(f"weight {name} differs by {d:.2e}")
    compare_records(ddp.records["metrics"], ref.records["metrics"], problems)
    gathered = [None] * world
    dist.all_gather_object(gathered, ddp.records["metrics"])
    if any(g != gathered[0] for g in gathered):
        problems.append("records differ between ranks")


def compare_records(got, want, problems):
    for phase in ("train", "valid"):
        if len(got[phase]) != len(want[phase]):
            problems.append(f"{phase}: {len(got[phase])} epochs recorded, expected {len(want[phase])}")
            continue
        for epoch, (g, w) in enumerate(zip(got[phase], want[phase], strict=True), start=1):
            if g.keys() != w.keys():
                problems.append(f"{phase} epoch {epoch}: metrics {list(g)} != {list(w)}")
                continue
            for key in w:
                for (name, gv), (_, wv) in zip(flat(key, g[key]), flat(key, w[key]), strict=True):
                    if not abs(gv - wv) <= TOL:
                        problems.append(f"{phase} epoch {epoch} {name}: {gv:.7f} != {wv:.7f}")


def flat(key, value):
    """[(name, float)]: a dict value (one loss per optimizer) gives one entry per optimizer."""
    return sorted((f"{key}_{k}", v) for k, v in value.items()) if isinstance(value, dict) else [(key, value)]


# -- checks ----------------------------------------------------------------------------------


def check_fast_path(problems):
    """In-memory tensors (TensorBatches), shuffled each epoch, with validation data; then evaluate/predict."""
    world = distributed.world_size()
    ddp = fit(classifier(), (X, Y), B, valid_data=(XV, YV))
    with single_process():
        ref = fit(classifier(), (X, Y), world * B, valid_data=(XV, YV))
    compare_fits(ddp, ref, problems)
    # evaluate / predict are not sharded: each rank gets the whole result
    got, want = ddp.evaluate((XV, YV), verbose=False), ref.evaluate((XV, YV), verbose=False)
    compare_records(got.records["metrics"], want.records["metrics"], problems)
    preds = ddp.predict(XV, verbose=False)
    if preds.shape != (len(XV), 3) or not torch.allclose(preds, ref.predict(XV, verbose=False), atol=TOL):
        problems.append(f"predict: shape {tuple(preds.shape)} or values differ")


class SamplerSpy(pyluz.Callback):
    """Records the training loader's sampler each epoch (runs after TrainValid's set_epoch)."""

    def __init__(self):
        self.seen = []

    def on_train_begin(self):
        sampler = self.ctx.data.sampler
        self.seen.append(
            (
                type(sampler).__name__,
                getattr(sampler, "epoch", None),
                getattr(sampler, "seed", None),
                getattr(sampler, "num_replicas", None),
                self.ctx.data.batch_size,
            )
        )


def check_dataset_path(problems):
    """A shuffled map-style Dataset: pyluz's DataLoader gets a OneProcessOrderSampler (set_epoch is called
    each epoch), so N ranks read the rows of one process with the global batch and the same seed."""
    world = distributed.world_size()
    spy = SamplerSpy()
    ddp = fit(classifier(), Rows(X, Y), B, valid_data=Rows(XV, YV), callbacks=[spy])
    names = [s[0] for s in spy.seen]
    epochs = [s[1] for s in spy.seen]
    if names != ["OneProcessOrderSampler"] * 3 or epochs != [1, 2, 3] or {s[3:] for s in spy.seen} != {(world, B)}:
        problems.append(f"train sampler per epoch: {spy.seen}")
    # Reference: one process, batch N * b, the same seed, pyluz's own shuffled DataLoader.
    with single_process():
        ref = fit(classifier(), Rows(X, Y), world * B, valid_data=Rows(XV, YV))
    compare_fits(ddp, ref, problems)


def check_user_dataloader(problems):
    """A user's plain DataLoader (not shuffled) is rebuilt with a DistributedSampler."""
    world = distributed.world_size()

    def loaders(batch_size):
        return DataLoader(Rows(X, Y), batch_size=batch_size), DataLoader(Rows(XV, YV), batch_size=batch_size)

    train, valid = loaders(B)
    ddp = fit(classifier(lr=0.02), train, None, valid_data=valid)
    with single_process():
        train, valid = loaders(world * B)
        ref = fit(classifier(lr=0.02), train, None, valid_data=valid)
    compare_fits(ddp, ref, problems)


def check_custom_step(problems):
    """A module with its own step(), loss() and set_optimizers(), reading self.ctx."""
    world = distributed.world_size()
    module = pyluz.setup(StepNet, metrics=[Accuracy()]).set_opt_hparams(lr=0.05)
    StepNet.seen_ctx = False
    ddp = fit(module, (X, Y), B, valid_data=(XV, YV))
    if not StepNet.seen_ctx:
        problems.append("step() did not see self.ctx")
    if getattr(ddp.model, "ctx", None) is not None:
        problems.append("model.ctx was not cleared after fit")
    with single_process():
        ref = fit(module, (X, Y), world * B, valid_data=(XV, YV))
    compare_fits(ddp, ref, problems)


def check_two_optimizers(problems):
    """The default step with two optimizers: two forward/backward passes through DDP per batch."""
    world = distributed.world_size()
    module = pyluz.setup(TwoOpt, loss=nn.CrossEntropyLoss()).set_opt_hparams(lr=0.1)
    ddp = fit(module, (X, Y), B)
    with single_process():
        ref = fit(module, (X, Y), world * B)
    compare_fits(ddp, ref, problems)


def check_rank0_output(problems):
    """Progress prints on rank 0 only; the helpers agree with torchrun's environment."""
    if distributed.rank() != int(os.environ["RANK"]) or distributed.world_size() != int(os.environ["WORLD_SIZE"]):
        problems.append("rank()/world_size() disagree with the environment")
    if distributed.is_main_process() != (distributed.rank() == 0):
        problems.append("is_main_process() is wrong")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        torch.manual_seed(SEED)
        fitted = classifier().fit((X, Y), epochs=2, verbose=True, dataloader_options={"batch_size": B})
    with tempfile.TemporaryDirectory() as tmp:  # a directory of this process's own
        path = os.path.join(tmp, "model.safetensors")
        fitted.save(path)
        if os.path.exists(path) != distributed.is_main_process():
            problems.append(f"Fitted.save on rank {distributed.rank()}: written = {os.path.exists(path)}")
    text = err.getvalue()
    if distributed.is_main_process() and "Epoch 2/2" not in text:
        problems.append(f"rank 0 printed no progress: {text!r}")
    if not distributed.is_main_process() and text:
        problems.append(f"rank {distributed.rank()} printed: {text!r}")


def check_warnings(problems):
    """Rank 0 warns when the ranks are seeded differently or a DataLoader cannot be sharded."""
    custom = DataLoader(Rows(X, Y), batch_size=B, sampler=list(range(len(X))))
    torch.manual_seed(SEED + distributed.rank())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        classifier().fit(custom, epochs=1, verbose=False)
    messages = " | ".join(str(w.message) for w in caught if issubclass(w.category, RuntimeWarning))
    expected = ["seeded differently", "used as is"] if distributed.is_main_process() else []
    if [e for e in ["seeded differently", "used as is"] if e in messages] != expected:
        problems.append(f"rank {distributed.rank()} warnings: {messages!r}")


def error_rate(preds, target):
    return (preds.argmax(dim=1) != target).float().mean()


def check_ecosystem_metrics(problems):
    """torchmetrics objects (synchronised by torchmetrics itself, AUROC's "cat" state included) and a
    plain function metric (its sum and count summed over ranks) give the one-process records."""
    try:
        from torchmetrics.classification import MulticlassAUROC, MulticlassF1Score
    except ImportError:
        print(
            f"[rank {distributed.rank()}] check_ecosystem_metrics: torchmetrics is not installed, skipped",
            file=sys.stderr,
            flush=True,
        )
        return
    world = distributed.world_size()

    def module():
        return pyluz.setup(
            Net,
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.Adam,
            metrics=[MulticlassF1Score(num_classes=3, average="macro"), MulticlassAUROC(num_classes=3), error_rate],
        ).set_opt_hparams(lr=0.05)

    ddp = fit(module(), (X, Y), B, valid_data=(XV, YV))
    with single_process():
        ref = fit(module(), (X, Y), world * B, valid_data=(XV, YV))
    compare_fits(ddp, ref, problems)
    got, want = ddp.evaluate((XV, YV), verbose=False), ref.evaluate((XV, YV), verbose=False)
    compare_records(got.records["metrics"], want.records["metrics"], problems)


def check_gather_batch(problems):
    """gather_batch (how R metrics see the global batch): rank r's row i is global row i * N + r, with
    unequal row counts (rank r holds rows r, r + N, ... of 2N + 1 rows), for float, bool and nested values."""
    distributed.init("cpu")  # the group fit would join (this check runs first)
    world, r = distributed.world_size(), distributed.rank()
    total = 2 * world + 1
    mine = torch.arange(r, total, world)
    value = [mine.float().unsqueeze(1).repeat(1, 2), {"odd": mine % 2 == 1}]
    got = distributed.gather_batch(value)
    want = torch.arange(total)
    if not torch.equal(got[0], want.float().unsqueeze(1).repeat(1, 2)):
        problems.append(f"gathered rows {got[0][:, 0].tolist()}, expected {want.tolist()}")
    if got[1]["odd"].dtype != torch.bool or not torch.equal(got[1]["odd"], want % 2 == 1):
        problems.append(f"gathered bool {got[1]['odd'].tolist()}")


CHECKS = [
    check_gather_batch,
    check_fast_path,
    check_dataset_path,
    check_user_dataloader,
    check_custom_step,
    check_two_optimizers,
    check_ecosystem_metrics,
    check_rank0_output,
    check_warnings,
]


def main():
    torch.set_num_threads(1)
    passed = failed = 0
    for check in CHECKS:
        problems = []
        try:
            check(problems)
        except BaseException:
            # Another rank may be waiting in a collective: stop now so torchrun stops it too.
            print(
                f"[rank {distributed.rank()}] {check.__name__} raised:\n{traceback.format_exc()}",
                file=sys.stderr,
                flush=True,
            )
            os._exit(1)
        everyone = [None] * distributed.world_size()
        dist.all_gather_object(everyone, problems)
        bad = [f"rank {r}: {p}" for r, ps in enumerate(everyone) for p in ps]
        if bad:
            failed += 1
        else:
            passed += 1
        if distributed.is_main_process():
            print(f"{check.__name__}: {'FAILED' if bad else 'ok'}", flush=True)
            for line in bad:
                print(f"    {line}", flush=True)
    if distributed.is_main_process():
        print(f"ddp: {passed} passed, {failed} failed", flush=True)
    distributed.teardown()
    return 1 if failed else 0


if __name__ == "__main__":
    if int(os.environ.get("WORLD_SIZE", 1)) < 2:
        sys.exit(
            "Run with torchrun and at least 2 processes: "
            "torchrun --standalone --nproc_per_node=2 tests/distributed/ddp_check.py"
        )
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter finalization: with the group already destroyed, a gloo/c10d thread still
    # alive at static destruction can abort the process ("terminate called without an active
    # exception", seen once in ~10 runs) after every check has passed.
    os._exit(code)
