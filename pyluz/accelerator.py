"""Device selection and placement of models, optimizers and batches."""

from __future__ import annotations

import os
from typing import Any
import platform
import warnings

import torch

from . import distributed
from .checks import check_bool, check_choice, check_int, check_type, fail, message
from .nested import to_device


def move_to_device(obj, device, non_blocking=True):
    """Move every tensor inside nested tuples/namedtuples/lists/dicts to `device`; other values are untouched."""
    return to_device(obj, device, non_blocking)


class DeviceLoader:
    """Wraps a DataLoader (or any iterable of batches) and moves each batch to the device."""

    def __init__(self, loader, device):
        self.loader = loader
        self.device = device

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        device = self.device
        for batch in self.loader:
            yield move_to_device(batch, device)


def _mps_available():
    if os.environ.get("LUZ_DISABLE_MPS", "FALSE").upper() not in ("FALSE", "0", ""):
        return False
    mps = getattr(torch.backends, "mps", None)
    return platform.machine() == "arm64" and mps is not None and mps.is_available()


def pick_device(cpu=False, cuda_index=None):
    """`cpu=True` -> cpu; else CUDA if available, else MPS, else CPU."""
    if cpu:
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device() if cuda_index is None else cuda_index)
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_cuda_index(cuda_index):
    """An error for a CUDA device that doesn't exist; a warning when there is no CUDA at all (CPU/MPS is used)."""
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        if cuda_index >= count:
            fail(
                "cuda_index", f"the index of a CUDA device of this machine (it has {count}: 0..{count - 1})", cuda_index
            )
    else:
        warnings.warn(
            f"`cuda_index={cuda_index}` is ignored: no CUDA device is available, so training runs on "
            "the CPU (or MPS).",
            stacklevel=3,
        )


class Accelerator:
    """Chooses the device and places the model, optimizer state and batches on it.

    Usable on its own in a hand-written loop::

        acc = pyluz.Accelerator()
        model, opt, dl = acc.prepare(model, opt, dl)
        for x, y in dl: ...   # batches arrive on acc.device

    `device_placement=False` leaves the model, its optimizer state and the batches where they are
    (the user places them). `strategy="ddp"` (or running under torchrun with WORLD_SIZE > 1) trains with
    DistributedDataParallel; see `pyluz.distributed`.
    """

    def __init__(
        self,
        device_placement: bool = True,
        cpu: bool = False,
        cuda_index: int | None = None,
        strategy: str | None = None,
    ) -> None:
        check_bool(device_placement, "device_placement")
        check_bool(cpu, "cpu")
        if cuda_index is not None:
            cuda_index = check_int(cuda_index, "cuda_index", min_value=0)
        check_choice(strategy, "strategy", (None, "ddp"))
        if cuda_index is not None and not cpu and not distributed.requested(strategy):
            check_cuda_index(cuda_index)
        self.device_placement = device_placement
        self.cpu = cpu
        self.cuda_index = cuda_index
        self.strategy = strategy
        # Under DDP each rank takes its own CUDA device (LOCAL_RANK) or the CPU (pyluz.distributed).
        self.device = (distributed.pick_device if self.ddp else pick_device)(cpu, cuda_index)

    @property
    def ddp(self) -> bool:
        """Whether `prepare()` trains with DistributedDataParallel (strategy="ddp" or under torchrun)."""
        return distributed.requested(self.strategy)

    def __repr__(self) -> str:
        return f"Accelerator(device={str(self.device)!r})"

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` on the device (as is with `device_placement=False`); no DDP wrapping (that is `prepare`)."""
        return model.to(self.device) if self.device_placement else model

    def prepare_optimizer(self, opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Move an optimizer's state tensors (e.g. Adam moments) to the device, where `prepare_model` puts
        the parameters; with `device_placement=False` the state stays with the parameters the user placed."""
        if not self.device_placement:
            return opt
        for state in opt.state.values():
            for k, v in state.items():
                if isinstance(v, torch.Tensor) and k != "step":
                    state[k] = v.to(self.device)
        return opt

    def prepare_loader(self, loader: Any) -> Any:
        """Batches of `loader` arrive on the device (with `device_placement=False` they stay where they are)."""
        if loader is None or not self.device_placement:
            return loader
        if hasattr(loader, "to") and hasattr(loader, "tensors"):  # in-memory batches: move once
            return loader.to(self.device)
        if self.device.type == "cpu":
            return loader
        return DeviceLoader(loader, self.device)

    def prepare(self, model: torch.nn.Module | None, optimizers: Any = None, *loaders: Any) -> tuple:
        """Place `model`, optimizer state and loaders on the device; returns them in the same order.

        `optimizers` is an optimizer, a dict or list of them, or None; `loaders` are DataLoaders or
        other iterables of batches. Under DDP it also joins the process group, wraps the model in
        DistributedDataParallel and gives each loader this rank's shard (`prepare_model` /
        `prepare_loader` only place).
        """
        _check_prepare_args(model, optimizers, loaders)
        model = self.prepare_model(model) if model is not None else None
        if isinstance(optimizers, dict):
            optimizers = {k: self.prepare_optimizer(o) for k, o in optimizers.items()}
        elif isinstance(optimizers, (list, tuple)):
            optimizers = type(optimizers)(self.prepare_optimizer(o) for o in optimizers)
        elif optimizers is not None:
            optimizers = self.prepare_optimizer(optimizers)
        if self.ddp:  # DDP hook: process group, DDP wrapper, sharded loaders (pyluz.distributed)
            model, loaders = distributed.prepare(model, loaders, self.device)
        return (model, optimizers, *(self.prepare_loader(dl) for dl in loaders))

    @property
    def pin_memory(self) -> bool:
        """DataLoaders built by pyluz pin memory when batches go to CUDA."""
        return self.device.type == "cuda"


def _check_prepare_args(model, optimizers, loaders):
    """luz's prepare() takes only modules, optimizers and dataloaders; say which argument is off."""
    if model is not None:
        check_type(model, "model", torch.nn.Module, "a torch.nn.Module or None")
    opts = (
        optimizers.values()
        if isinstance(optimizers, dict)
        else optimizers
        if isinstance(optimizers, (list, tuple))
        else []
        if optimizers is None
        else [optimizers]
    )
    for opt in opts:
        if not isinstance(opt, torch.optim.Optimizer):
            hint = (
                " (pass None as `optimizers` to prepare only a model and loaders)" if hasattr(opt, "__iter__") else ""
            )
            expected = "a torch optimizer, a dict or list of them, or None"
            raise TypeError(message("optimizers", expected, type(opt).__name__ + hint))
    for i, loader in enumerate(loaders):
        if loader is not None and not hasattr(loader, "__iter__"):
            expected = "a DataLoader or another iterable of batches"
            raise TypeError(message(f"loaders[{i}]", expected, type(loader).__name__))
