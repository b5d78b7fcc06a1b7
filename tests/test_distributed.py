"""pyluz.distributed in one process (plus one quick 2-process spawn); the torchrun check is
tests/distributed/ddp_check.py (`make test-ddp`)."""

import datetime
import os
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, TensorDataset

import pyluz
from pyluz import distributed
from pyluz.accelerator import DeviceLoader
from pyluz.data import TensorBatches
from pyluz.distributed import OneProcessOrderSampler, ShardedTensorBatches, shard_loader
from pyluz.metrics import Accuracy
from helpers import Net, classification_data

LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    """Tests start outside torchrun and leave no process group behind."""
    for key in LAUNCH_ENV:
        monkeypatch.delenv(key, raising=False)
    assert not distributed.is_initialized()
    yield
    distributed.teardown()
    assert not distributed.is_initialized()


def assert_records_close(got, want, tol):
    """Per-epoch metric dicts of one phase, equal within `tol`."""
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys() and g == pytest.approx(w, abs=tol)


def ids(batch):
    return batch[0].tolist()


# -- who am I / device -----------------------------------------------------------------------


def test_rank_helpers_read_torchruns_environment_before_the_group_exists(monkeypatch):
    assert (distributed.rank(), distributed.world_size(), distributed.is_main_process()) == (0, 1, True)
    assert not distributed.requested(None) and distributed.requested("ddp")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert (distributed.rank(), distributed.world_size(), distributed.is_main_process()) == (1, 2, False)
    assert distributed.launched() and distributed.requested(None)
    assert pyluz.Accelerator(cpu=True).ddp


def test_ddp_device_is_local_ranks_cuda_or_cpu(monkeypatch):
    assert distributed.pick_device(cpu=True) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.pick_device() == torch.device("cpu")  # never MPS: no backend for it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.pick_device() == torch.device("cuda", 1)
    assert distributed.pick_device(cuda_index=0) == torch.device("cuda", 0)
    assert distributed.pick_device(cpu=True) == torch.device("cpu")


def test_collective_helpers_are_no_ops_without_a_group():
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    distributed.barrier()


# -- sharding in-memory data -----------------------------------------------------------------


@pytest.mark.parametrize("n", [48, 50, 53])
@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_batches_together_are_one_processs_global_batch(n, world, shuffle, drop_last):
    b = 4
    rows = torch.arange(n)
    torch.manual_seed(7)
    reference = [ids(x) for x in TensorBatches([rows], world * b, shuffle, drop_last)]
    per_rank = []
    for r in range(world):
        torch.manual_seed(7)  # every rank draws the epoch's order as one process does
        shard = ShardedTensorBatches(TensorBatches([rows], b, shuffle, drop_last), r, world)
        batches = [ids(x) for x in shard]
        assert len(batches) == len(shard)
        per_rank.append(batches)
    assert len({len(batches) for batches in per_rank}) == 1  # same number of batches everywhere
    together = [sorted(sum(parts, [])) for parts in zip(*per_rank, strict=True)]
    if drop_last or n % world == 0:  # no padding: exactly one process's batches
        assert together == [sorted(x) for x in reference]
    else:  # padded with the first rows of the epoch's order, as DistributedSampler pads
        assert sorted(sum(together, [])) == sorted(sum(reference, []) + sum(reference, [])[: world - n % world])


@pytest.mark.parametrize("drop_last", [False, True])
def test_sharded_rows_follow_distributed_sampler(drop_last):
    for r in range(3):
        shard = ShardedTensorBatches(TensorBatches([torch.arange(11)], 2, False, drop_last), r, 3)
        sampler = DistributedSampler(range(11), num_replicas=3, rank=r, shuffle=False, drop_last=drop_last)
        assert shard.rows().tolist() == list(sampler)


def test_sharded_batches_keep_dicts_and_devices():
    data = {"x": torch.arange(8.0).unsqueeze(1), "y": torch.arange(8)}
    shard = ShardedTensorBatches(TensorBatches(data, 2), 1, 2)
    batches = list(shard)
    assert [b["y"].tolist() for b in batches] == [[1, 3], [5, 7]]
    assert batches[0]["x"].tolist() == [[1.0], [3.0]]
    assert isinstance(shard.subset(torch.arange(4)), ShardedTensorBatches)
    assert [b["y"].tolist() for b in shard.subset(torch.arange(4))] == [[1, 3]]


# -- sharding DataLoaders --------------------------------------------------------------------


class Rows(Dataset):
    def __len__(self):
        return 20

    def __getitem__(self, i):
        return torch.tensor([i])


def collate(items):
    return [torch.cat(items)]


def test_plain_dataloader_is_rebuilt_with_a_distributed_sampler():
    parts = []
    for r in range(2):
        torch.manual_seed(3)
        loader = DataLoader(Rows(), batch_size=4, shuffle=True, drop_last=True, collate_fn=collate)
        sharded = shard_loader(loader, rank=r, world_size=2)
        sampler = sharded.sampler
        assert isinstance(sampler, OneProcessOrderSampler) and isinstance(sampler, DistributedSampler)
        assert sharded is not loader
        assert (sampler.num_replicas, sampler.rank, sampler.shuffle, sampler.drop_last) == (2, r, True, True)
        assert (sharded.batch_size, sharded.drop_last, sharded.collate_fn) == (4, True, collate)
        distributed.set_epoch(DeviceLoader(sharded, torch.device("cpu")), 5)  # reaches through DeviceLoader
        assert sampler.epoch == 5
        parts.append([[ids(x) for x in sharded] for _ in range(2)])  # two epochs
        parts.append(torch.rand(1))
    rank0, after0, rank1, after1 = parts
    # One process with the global batch and the same seed reads the same rows: its k-th batch,
    # every other row, is each rank's k-th batch, epoch after epoch; the RNG ends in the same state.
    torch.manual_seed(3)
    one = DataLoader(Rows(), batch_size=8, shuffle=True, drop_last=True, collate_fn=collate)
    one_epochs = [[ids(x) for x in one] for _ in range(2)]
    assert torch.equal(torch.rand(1), after0) and torch.equal(after0, after1)
    for epoch, batches in enumerate(one_epochs):
        assert len(batches) == len(rank0[epoch]) == len(rank1[epoch]) == 2
        for k, batch in enumerate(batches):
            assert batch[0::2] == rank0[epoch][k] and batch[1::2] == rank1[epoch][k]


def test_a_shuffled_loader_with_a_generator_reads_one_process_order():
    g_one, g_ddp = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    one = DataLoader(Rows(), batch_size=4, shuffle=True, generator=g_one, collate_fn=collate)
    sharded = shard_loader(DataLoader(Rows(), batch_size=4, shuffle=True, generator=g_ddp, collate_fn=collate), 0, 1)
    for _ in range(2):
        assert [ids(x) for x in sharded] == [ids(x) for x in one]
    assert torch.equal(g_one.get_state(), g_ddp.get_state())


def test_unshardable_loaders_are_used_as_is_with_a_warning():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(4))

    custom = DataLoader(Rows(), batch_size=4, sampler=list(range(20)))
    stream = DataLoader(Stream(), batch_size=2)
    for loader in (custom, stream, [[torch.zeros(1)]]):
        with pytest.warns(RuntimeWarning, match="every rank reads all of it"):
            assert shard_loader(loader, rank=0, world_size=2) is loader
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shard_loader(custom, rank=1, world_size=2) is custom  # only rank 0 warns
        presharded = DataLoader(Rows(), batch_size=4, sampler=DistributedSampler(Rows(), 2, 0))
        assert shard_loader(presharded, rank=0, world_size=2) is presharded


# -- the DDP wrapper (group of one) ----------------------------------------------------------


class WithLoss(Net):
    scale = 2.0

    def loss(self, pred, target):
        return nn.functional.cross_entropy(pred, target) * self.scale


def test_ddp_wrapper_passes_state_dict_through():
    distributed.init(torch.device("cpu"))
    module = WithLoss()
    model = distributed.wrap_model(module, torch.device("cpu"))
    assert isinstance(model, nn.parallel.DistributedDataParallel) and distributed.unwrap(model) is module
    assert model.module.body is module.body and not hasattr(model, "scale")  # no attribute delegation
    assert list(model.state_dict()) == list(module.state_dict())  # no "module." prefix
    state = {k: torch.zeros_like(v) for k, v in module.state_dict().items()}
    model.load_state_dict(state)
    assert all(p.abs().sum() == 0 for p in module.parameters())
    assert distributed.wrap_model(model, torch.device("cpu")) is model
    frozen = nn.Linear(2, 1).requires_grad_(False)
    assert distributed.wrap_model(frozen, torch.device("cpu")) is frozen  # nothing to train: no DDP


def test_accelerator_prepare_with_ddp_in_a_hand_written_loop():
    acc = pyluz.Accelerator(strategy="ddp", cpu=True)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dl = DataLoader(TensorDataset(torch.randn(8, 3), torch.randn(8, 1)), batch_size=4, shuffle=True)
    ddp_model, opt2, dl2 = acc.prepare(model, opt, dl)
    assert distributed.is_initialized() and distributed.world_size() == 1
    assert distributed.is_ddp(ddp_model) and opt2 is opt
    assert isinstance(dl2.sampler, DistributedSampler) and len(dl2) == 2
    assert acc.prepare_model(model) is model  # placement only


def test_fit_with_strategy_ddp_in_one_process_matches_a_plain_fit(xy):
    x, y = xy
    module = pyluz.setup(WithLoss, optimizer=torch.optim.Adam, metrics=[Accuracy()]).set_opt_hparams(lr=0.01)

    def run(accelerator):
        torch.manual_seed(0)
        return module.fit(
            (x, y),
            epochs=2,
            valid_data=0.25,
            accelerator=accelerator,
            verbose=False,
            dataloader_options={"batch_size": 16},
        )

    plain = run(pyluz.Accelerator(cpu=True))
    ddp = run(pyluz.Accelerator(cpu=True, strategy="ddp"))
    assert distributed.is_initialized()  # pyluz created the group; the fixture's teardown destroys it
    assert type(ddp.model) is WithLoss and getattr(ddp.model, "ctx", None) is None
    for a, b in zip(plain.model.parameters(), ddp.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for phase in ("train", "valid"):
        assert_records_close(ddp.records["metrics"][phase], plain.records["metrics"][phase], 1e-6)
    torch.testing.assert_close(ddp.predict(x[:5], verbose=False), plain.predict(x[:5], verbose=False))


def test_custom_step_sees_ctx_through_the_wrapper(xy):
    class Stepper(WithLoss):
        def set_optimizers(self, lr):
            return torch.optim.SGD(self.parameters(), lr=lr)

        def step(self):
            ctx = self.ctx
            assert distributed.is_ddp(ctx.model) and distributed.unwrap(ctx.model).ctx is ctx
            ctx.pred = ctx.model(ctx.input)
            loss = self.loss(ctx.pred, ctx.target)
            ctx.loss = {"opt": loss.detach()}
            if ctx.training:
                ctx.opt.zero_grad()
                loss.backward()
                ctx.opt.step()

    x, y = xy
    fitted = (
        pyluz.setup(Stepper)
        .set_opt_hparams(lr=0.1)
        .fit((x, y), epochs=2, accelerator=pyluz.Accelerator(cpu=True, strategy="ddp"), verbose=False)
    )
    assert len(fitted.records["metrics"]["train"]) == 2 and type(fitted.model) is Stepper


def test_progress_prints_on_rank_zero_only(monkeypatch, capsys, xy):
    x, y = xy
    module = pyluz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1)
    monkeypatch.setenv("RANK", "1")  # no WORLD_SIZE: no DDP, only the rank says "not main"
    module.fit((x, y), epochs=1, verbose=True)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    module.fit((x, y), epochs=1, verbose=True)
    assert "Epoch 1/1" in capsys.readouterr().err


# -- two processes ---------------------------------------------------------------------------


def _spawned_fit(r, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=r, world_size=world, timeout=datetime.timedelta(seconds=60)
    )  # a broken collective fails, never hangs
    x, y = _data()
    torch.manual_seed(0)
    fitted = _module().fit(
        (x, y),
        epochs=2,
        valid_data=(x[:24], y[:24]),
        verbose=False,
        accelerator=pyluz.Accelerator(cpu=True, strategy="ddp"),
        dataloader_options={"batch_size": 8},
    )
    assert dist.is_initialized()  # the user's group is left alone
    torch.save(
        {"state": fitted.model.state_dict(), "records": fitted.records["metrics"]}, os.path.join(out_dir, f"rank{r}.pt")
    )
    dist.destroy_process_group()
    os._exit(0)  # skip interpreter teardown: slow, and it can abort in torch's threads after the test is done


def _data():
    return classification_data(64, 1, label=lambda x: (x[:, 0] > 0).long())


def _module():
    return pyluz.setup(
        Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, metrics=[Accuracy()]
    ).set_opt_hparams(lr=0.1)


def test_two_spawned_ranks_train_like_one_process_with_the_global_batch(tmp_path):
    mp.spawn(_spawned_fit, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    x, y = _data()
    torch.manual_seed(0)
    reference = _module().fit(
        (x, y), epochs=2, valid_data=(x[:24], y[:24]), verbose=False, dataloader_options={"batch_size": 16}
    )
    for r in range(2):
        got = torch.load(tmp_path / f"rank{r}.pt")
        for name, p in reference.model.state_dict().items():
            torch.testing.assert_close(got["state"][name], p, rtol=0, atol=1e-5)
        for phase in ("train", "valid"):
            assert_records_close(got["records"][phase], reference.records["metrics"][phase], 1e-5)
