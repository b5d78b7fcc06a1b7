"""`AutoResume` and `ResumeFromCheckpoint` (luz_callback_auto_resume / luz_callback_resume_from_checkpoint)."""

import errno
import os
import queue
import sys
import threading
import time
import warnings
import weakref

from ..checkpoints import (
    _restore_callbacks,
    apply_checkpoint,
    checkpoint_state,
    load_checkpoint,
    read_checkpoint,
    settings_differences,
    settings_entry,
    write_checkpoint,
)
from ..checks import check_bool, check_int, check_path, check_positive, fail
from ..control import SkipEpoch
from ..distributed import is_main_process, world_size
from .. import torch_save
from ..files import PendingFile, remove_temp_files
from ..positions import PositionedLoader
from .base import Callback
from .defaults import metric_device


def _message(ctx, text):
    """Through the progress renderer when there is one, else on stderr (only when verbose)."""
    if not ctx.verbose:
        return
    for cb in ctx.callbacks:
        renderer = getattr(cb, "renderer", None)
        if renderer is not None and callable(getattr(renderer, "message", None)):
            renderer.message(text)
            return
    print(text, file=sys.stderr)


class AutoResume(Callback):
    """Makes a fit crash-safe: re-running the same code after a crash continues where it stopped.

    At the end of every epoch the full training state (model, optimizers, callbacks, including LR
    schedulers and early stopping, records and the RNG states of Python, numpy and torch) is written
    to `path` atomically. When a fit starts and `path` exists, everything is restored and the
    finished epochs are skipped, so the final weights equal those of an uninterrupted run (CPU,
    deterministic ops, same seeds and data). When the fit ends (all epochs done or early stopping)
    the file is deleted, so the next run starts fresh; after Ctrl-C it is kept, so the next run
    resumes. Weight `inf`; list it after EarlyStopping so its checkpoint includes the early
    stopping state of the same epoch.

    Inside an epoch: with `every_n_steps=N` (training batches since the last write) and/or
    `every_seconds=T` it also checkpoints during the epoch: besides the above, the running metric
    and loss states of the epoch in progress, the callbacks' states within it (e.g.
    GradientAccumulation's place in its cycle, a per-batch LR schedule, the GradScaler), the RNG
    states at the epoch's start (which give the epoch's data order again) and the number of
    batches trained on. A re-run then draws the same order, skips those batches without loading
    them and continues with the same random numbers, so a crash loses at most N steps and the
    result is the same as without it. The training thread only copies the state (serialized into
    memory, then into a temp file in the page cache); a persistent background thread fsyncs and
    renames it onto `path` (a write still in progress when the next one is due is waited for).
    A mid-epoch rename isn't fsynced into its directory: after a power loss the file may be the
    previous checkpoint, as exact a place to resume. Serializing on the writer thread instead
    costs more process CPU in all: the two threads then trade the GIL at every torch op.
    Mid-epoch checkpoints aren't supported under DDP (epoch-end ones are). During such a fit
    `ctx.train_data` is a `pyluz.positions.PositionedLoader` around the loader (its attributes
    are the loader's). With a DataLoader whose Dataset draws random numbers in `__getitem__`,
    the batches after a resume are spread over the workers differently, so those draws differ.

    Safety: resuming **raises ValueError** when the re-run's hparams or opt_hparams differ from
    those the file was written with (e.g. `lr=0.5` now, `0.1` then): the restored optimizer state
    would silently keep the old values. Restore the settings or delete the file. While a fit runs,
    it holds an exclusive lock (a POSIX record lock, `fcntl.lockf`, on `.<name>.lock` next to
    `path`: released by the kernel even after SIGKILL and not inherited by DataLoader worker
    processes, which may outlive a killed fit), so a second live process on the same file is
    refused with an error naming its pid; a fit in the same process takes the lock over (after a
    fit that raised, the lock stays with this process until this callback is garbage-collected,
    the next fit on `path` ends, or the process exits). Temp files are removed only when the
    process that wrote them is dead.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> fitted = model.fit((x, y), epochs=3, verbose=False, callbacks=[pyluz.callbacks.AutoResume("run1/state.pt")])
    >>> every_5 = pyluz.callbacks.AutoResume("run2/state.pt", every_n_steps=5)   # also inside epochs
    >>> fitted = model.fit((x, y), epochs=3, verbose=False, dataloader_options={"batch_size": 4}, callbacks=[every_5])

    Killed at epoch 17 of 50? Run the same script again: it continues from the end of epoch 16
    (with `every_n_steps`, from the last checkpoint inside epoch 17).
    """

    weight = float("inf")

    def __init__(self, path="./state.pt", every_n_steps=None, every_seconds=None):
        path = check_path(path, owner="AutoResume")
        if path.endswith(("/", os.sep)) or os.path.isdir(path):
            fail("path", "a file path such as './state.pt', not a directory", path, "AutoResume")
        self.path = path
        self.every_n_steps = (
            None if every_n_steps is None else check_int(every_n_steps, "every_n_steps", "AutoResume", min_value=1)
        )
        self.every_seconds = (
            None if every_seconds is None else check_positive(every_seconds, "every_seconds", "AutoResume")
        )
        self.mid_epoch = self.every_n_steps is not None or self.every_seconds is not None
        self.resume_epoch = 0
        self.interrupted = False
        self._position = None
        self._writer = None

    def hook(self, name):
        if name == "on_train_batch_end" and not self.mid_epoch:
            return None  # epoch-end only: no call per batch
        return super().hook(name)

    def on_fit_begin(self):
        ctx = self.ctx
        self._wait_for_writes(quiet=True)  # from an earlier fit of this callback that raised
        self.resume_epoch = 0
        self.interrupted = False
        self._position = None
        self._check_order()
        if self.mid_epoch and world_size() > 1:
            raise ValueError(
                "AutoResume: `every_n_steps` / `every_seconds` (checkpoints inside an epoch) aren't supported "
                "under DDP yet; leave them unset to checkpoint at every epoch's end."
            )
        if is_main_process():
            hold_lock(self.path, self)  # before touching the state file: one live fit per file
            if getattr(self, "_release", None) is None or not self._release.alive:
                # A fit that raises never reaches on_fit_end: the lock then goes with this callback.
                self._release = weakref.finalize(self, release_lock, self.path, id(self))
            remove_temp_files(self.path)  # left by a process killed while writing
        if self.mid_epoch and not isinstance(ctx.train_data, PositionedLoader):
            ctx.train_data = PositionedLoader(ctx.train_data, ctx)
        self._since_write, self._last_write = 0, time.monotonic()
        if not os.path.exists(self.path):
            return
        try:
            state = read_checkpoint(self.path)
            self._check_settings(state)
        except BaseException:
            release_lock(self.path, id(self))
            raise
        position = state.get("position")
        if position is not None and not isinstance(ctx.train_data, PositionedLoader):
            release_lock(self.path, id(self))
            raise ValueError(
                f"AutoResume: {self.path!r} was written inside an epoch (with `every_n_steps` / `every_seconds`); "
                "resume it with the same AutoResume settings, or delete it to start fresh."
            )
        try:
            apply_checkpoint(
                ctx,
                state,
                self.path,
                restore_model_state=True,
                restore_records=True,
                restore_optimizer_state=True,
                restore_callbacks_state=True,
                restore_rng_state=True,
            )
        except Exception as e:
            raise RuntimeError(
                f"AutoResume could not restore {self.path!r} into this fit ({e}). Is it from another "
                "model or setup? Delete the file to start fresh."
            ) from e
        self.resume_epoch = int(state.get("epoch", 0))
        if position is None:
            _message(ctx, f"Resumed from {self.path} after epoch {self.resume_epoch} of {ctx.max_epochs}.")
            return
        self._position = dict(position, callbacks=state.get("callbacks"))
        ctx.train_data.resume_at(position["epoch_rng"], position["consumed"], state.get("rng") or {})
        total = len(ctx.train_data) if hasattr(ctx.train_data.loader, "__len__") else "?"
        _message(
            ctx,
            f"Resumed from {self.path} at epoch {position['epoch']}, step {position['consumed']} of {total}.",
        )

    def _check_settings(self, state):
        ctx = self.ctx
        diffs = []
        for key in ("hparams", "opt_hparams"):
            if key in state:  # files from before this check don't have them
                now = settings_entry(getattr(ctx, key, None))
                diffs += [f"{key} {d}" for d in settings_differences(state[key] or {}, now)]
        if diffs:
            raise ValueError(
                f"AutoResume: {self.path!r} was written by a fit with other settings "
                f"({'; '.join(diffs)}). "
                "Resuming would silently train with the file's optimizer state and weights; restore the "
                "original settings to resume. Delete the file to start fresh with the new ones."
            )

    def _check_order(self):
        callbacks = self.ctx.callbacks
        later = callbacks[next(i for i, cb in enumerate(callbacks) if cb is self) + 1 :]
        stateful = [
            cb.name
            for cb in later
            if cb.hook("on_epoch_end") is not None and callable(getattr(cb, "load_state_dict", None))
        ]
        if stateful:
            warnings.warn(
                f"AutoResume runs before {', '.join(stateful)} at on_epoch_end, so its checkpoints miss "
                "their state of the same epoch; put AutoResume last in `callbacks`.",
                stacklevel=2,
            )

    def on_epoch_begin(self):
        if self.ctx.epoch <= self.resume_epoch:
            raise SkipEpoch()

    def on_train_begin(self):
        position = self._position
        if position is None or self.ctx.epoch != position["epoch"]:
            return
        # Last to run: the other callbacks have started the epoch; now put back their state inside it.
        self._position = None
        ctx = self.ctx
        _restore_callbacks(ctx.callbacks, position["callbacks"])
        metrics = ctx.metrics["train"]
        saved = position.get("metrics") or []
        if len(saved) != len(metrics):
            raise RuntimeError(
                f"AutoResume: {self.path!r} holds the state of {len(saved)} training metrics, this fit has "
                f"{len(metrics)}; resume with the same metrics or delete the file."
            )
        device = metric_device(ctx)
        for metric, state in zip(metrics, saved, strict=True):
            metric.load_state_dict(state)
            metric.to(device)
        ctx.iter = int(position["consumed"])  # the loop counts on from the batches already trained on

    def on_train_batch_end(self):
        self._since_write += 1
        due = (self.every_n_steps is not None and self._since_write >= self.every_n_steps) or (
            self.every_seconds is not None and time.monotonic() - self._last_write >= self.every_seconds
        )
        if due and is_main_process():
            self._write_inside_epoch()

    def _write_inside_epoch(self):
        ctx = self.ctx
        loader = ctx.train_data
        if not isinstance(loader, PositionedLoader) or loader.epoch_rng is None:
            return
        try:
            if ctx.iter >= len(loader):
                return  # the epoch's end writes in a moment
        except TypeError:
            pass
        state = checkpoint_state(ctx)
        state["epoch"] = int(ctx.epoch) - 1  # finished epochs
        state["position"] = {
            "epoch": int(ctx.epoch),
            "consumed": int(ctx.iter),
            "epoch_rng": loader.epoch_rng,  # made fresh at the epoch's start, never changed
            "metrics": [m.state_dict() for m in ctx.metrics["train"]],
        }
        if self._writer is None:
            self._writer = BackgroundWriter()
        self._writer.submit(self.path, torch_save.to_bytes(state))  # the copy the training thread makes
        self._since_write, self._last_write = 0, time.monotonic()

    def _wait_for_writes(self, quiet=False):
        if self._writer is not None:
            try:
                self._writer.wait()
            except RuntimeError:
                if not quiet:
                    raise

    def on_epoch_end(self):
        if is_main_process():
            self._wait_for_writes()  # a mid-epoch write must not land after this one
            write_checkpoint(self.ctx, self.path)
        self._since_write, self._last_write = 0, time.monotonic()

    def on_interrupt(self):
        self.interrupted = True

    def on_fit_end(self):
        ctx = self.ctx
        if isinstance(ctx.train_data, PositionedLoader):
            ctx.train_data = ctx.train_data.loader
        if is_main_process():
            try:
                self._wait_for_writes()
            finally:
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
        if not self.interrupted and is_main_process():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        if is_main_process():
            release_lock(self.path, id(self))
        self.resume_epoch = 0
        self._position = None

    def __repr__(self):
        extra = ""
        if self.every_n_steps is not None:
            extra += f", every_n_steps={self.every_n_steps}"
        if self.every_seconds is not None:
            extra += f", every_seconds={self.every_seconds:g}"
        return f"AutoResume(path={self.path!r}{extra})"


class BackgroundWriter:
    """One thread that makes checkpoint files durable (fsync, rename) while training goes on.

    `submit` writes the bytes into a temp file on the calling thread (into the page cache, a copy
    of the bytes); the thread only makes the blocking syscalls, which run without the GIL, so it
    hardly competes with training (a thread doing the whole `atomic_write`, Python included, cost
    ~3x more process CPU: it then trades the GIL with training at every step of it). `submit` waits for the previous write, so at most one copy is
    held; an error in the thread is raised again by the next `submit` / `wait`.
    """

    def __init__(self):
        self._jobs = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="pyluz-checkpoint-writer", daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            pending = self._jobs.get()
            if pending is None:
                return
            try:
                # Mid-epoch files only: after a power loss the previous checkpoint is as exact a start.
                pending.commit(durable_rename=False)
            except BaseException as e:  # handed to the training thread
                self._error = e
            finally:
                del pending
                self._idle.set()

    def wait(self):
        """Block until the write in progress (if any) is done; raise its error."""
        self._idle.wait()
        error, self._error = self._error, None
        if error is not None:
            raise RuntimeError(f"AutoResume: writing a checkpoint failed ({error}).") from error

    def submit(self, path, data):
        """Write `data` into a temp file next to `path` (the page cache: a copy) and hand its fsync and
        rename to the thread."""
        self.wait()
        pending = PendingFile(path)
        try:
            pending.file.write(data)
        except BaseException:
            pending.discard()
            raise
        self._idle.clear()
        self._jobs.put(pending)

    def close(self):
        self._jobs.put(None)
        self._thread.join()


# -- one live fit per state file ------------------------------------------------------------------

_HELD = {}  # lock path -> [open file whose lockf lock this process holds, id of the AutoResume owning it]


def _lock_path(path):
    path = os.path.abspath(path)
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")


def hold_lock(path, owner=None):
    """Take the exclusive lock of state file `path`, or raise RuntimeError naming the live process that has it.

    POSIX record locks (`lockf`) die with their process (SIGKILL included) and, unlike `flock`, are
    not inherited by forked children (DataLoader workers may outlive a killed fit), so a stale lock
    file never blocks; the pid written into it only serves the message. In this process a new `owner` takes a held lock
    over. Without `fcntl` (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:
        return
    lock = _lock_path(path)
    if lock in _HELD:
        _HELD[lock][1] = id(owner)
        return
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    while True:
        f = open(lock, "a+")
        try:
            fcntl.lockf(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                f.close()
                raise
            f.seek(0)
            owner = f.read().strip() or "unknown"
            f.close()
            raise RuntimeError(
                f"AutoResume: another live process (pid {owner}) is training with the state file "
                f"{path!r}. Two fits writing one state file would overwrite each other's progress; "
                "wait for it to finish, or give this fit another path."
            ) from None
        try:
            same = os.path.samestat(os.fstat(f.fileno()), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()  # the holder removed the file between our open and lockf: lock the new one
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    _HELD[lock] = [f, id(owner)]


def release_lock(path, owner_id=None):
    """Release (and remove) the lock `hold_lock(path)` took, if `owner_id` (when given) still owns it.

    The file is removed while the lock is still held, so no other process can lock a file that is
    about to disappear.
    """
    lock = _lock_path(path)
    held = _HELD.get(lock)
    if held is None or (owner_id is not None and held[1] != owner_id):
        return
    f = _HELD.pop(lock)[0]
    try:
        os.unlink(_lock_path(path))
    except OSError:
        pass
    f.close()  # closing the descriptor releases the lock


def latest_checkpoint(path):
    """`path` itself when it exists; for a directory, its last file in sorted order; None when nothing is there."""
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if not f.startswith(".") and os.path.isfile(os.path.join(path, f)))
        return os.path.join(path, files[-1]) if files else None
    return path if os.path.exists(path) else None  # a FIFO or device is then refused clearly by the reader


class ResumeFromCheckpoint(Callback):
    """Starts a fit from a checkpoint written by ModelCheckpoint / AutoResume / `write_checkpoint`.

    `path` is a checkpoint file or a directory of them (the last file in sorted order is used, e.g.
    the latest `epoch-XX-...pt` of ModelCheckpoint). It is resolved when the fit begins, so the
    directory may be filled by an earlier fit in the same session (luz resolved it at construction,
    issue #149). Flags select what is restored: model weights (default), records, optimizer
    states, callback states. Epochs count from 1 again. Warns when no checkpoint is found.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> ckpt = pyluz.callbacks.ModelCheckpoint("checkpoints/", monitor="train_loss")
    >>> _ = model.fit((x, y), epochs=2, verbose=False, callbacks=[ckpt])
    >>> resume = pyluz.callbacks.ResumeFromCheckpoint("checkpoints/", restore_optimizer_state=True)
    >>> fitted = model.fit((x, y), epochs=2, verbose=False, callbacks=[resume])   # starts from the epoch-2 weights
    """

    def __init__(
        self,
        path,
        restore_model_state=True,
        restore_records=False,
        restore_optimizer_state=False,
        restore_callbacks_state=False,
    ):
        self.path = check_path(path)
        self.restore_model_state = check_bool(restore_model_state, "restore_model_state")
        self.restore_records = check_bool(restore_records, "restore_records")
        self.restore_optimizer_state = check_bool(restore_optimizer_state, "restore_optimizer_state")
        self.restore_callbacks_state = check_bool(restore_callbacks_state, "restore_callbacks_state")
        self.loaded_path = None

    def on_fit_begin(self):
        self.loaded_path = None
        path = latest_checkpoint(self.path)
        if path is None:
            what = "has no checkpoint files" if os.path.isdir(self.path) else "does not exist"
            warnings.warn(
                f"ResumeFromCheckpoint: the checkpoint path {self.path!r} {what}; training starts from " "scratch.",
                stacklevel=2,
            )
            return
        load_checkpoint(
            self.ctx,
            path,
            restore_model_state=self.restore_model_state,
            restore_records=self.restore_records,
            restore_optimizer_state=self.restore_optimizer_state,
            restore_callbacks_state=self.restore_callbacks_state,
        )
        self.loaded_path = path

    def __repr__(self):
        return (
            f"ResumeFromCheckpoint(path={self.path!r}, restore_model_state={self.restore_model_state}, "
            f"restore_records={self.restore_records}, restore_optimizer_state={self.restore_optimizer_state}, "
            f"restore_callbacks_state={self.restore_callbacks_state})"
        )
