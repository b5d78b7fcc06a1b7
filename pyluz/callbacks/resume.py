"""`AutoResume` and `ResumeFromCheckpoint` (luz_callback_auto_resume / luz_callback_resume_from_checkpoint)."""

import os
import sys
import warnings
import weakref

from ..checkpoints import (
    apply_checkpoint,
    load_checkpoint,
    read_checkpoint,
    settings_differences,
    settings_entry,
    write_checkpoint,
)
from ..control import SkipEpoch
from ..distributed import is_main_process
from ..checks import check_bool, check_path
from ..files import remove_temp_files
from .base import Callback


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

    Safety: resuming **raises ValueError** when the re-run's hparams or opt_hparams differ from
    those the file was written with (e.g. `lr=0.5` now, `0.1` then): the restored optimizer state
    would silently keep the old values. Restore the settings or delete the file. While a fit runs,
    it holds an exclusive lock (`fcntl.flock` on `.<name>.lock` next to `path`, released by the
    kernel even after SIGKILL), so a second live process on the same file is refused with an error
    naming its pid; a fit in the same process takes the lock over (after a fit that raised, the
    lock stays with this process until this callback is garbage-collected, the next fit on `path`
    ends, or the process exits). Temp files are removed only when the process that wrote them is dead.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> fitted = model.fit((x, y), epochs=3, verbose=False, callbacks=[pyluz.callbacks.AutoResume("run1/state.pt")])

    Killed at epoch 17 of 50? Run the same script again: it continues from the end of epoch 16.
    """

    weight = float("inf")

    def __init__(self, path="./state.pt"):
        path = check_path(path)
        if path.endswith(("/", os.sep)) or os.path.isdir(path):
            raise ValueError(f"`path` must be a file path such as './state.pt', got the directory {path!r}.")
        self.path = path
        self.resume_epoch = 0
        self.interrupted = False

    def on_fit_begin(self):
        ctx = self.ctx
        self.resume_epoch = 0
        self.interrupted = False
        self._check_order()
        if is_main_process():
            hold_lock(self.path, self)  # before touching the state file: one live fit per file
            if getattr(self, "_release", None) is None or not self._release.alive:
                # A fit that raises never reaches on_fit_end: the lock then goes with this callback.
                self._release = weakref.finalize(self, release_lock, self.path, id(self))
            remove_temp_files(self.path)  # left by a process killed while writing
        if not os.path.exists(self.path):
            return
        try:
            state = read_checkpoint(self.path)
            self._check_settings(state)
        except BaseException:
            release_lock(self.path, id(self))
            raise
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
        _message(ctx, f"Resuming training from {self.path} (epoch {self.resume_epoch} of {ctx.max_epochs} done).")

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

    def on_epoch_end(self):
        if is_main_process():
            write_checkpoint(self.ctx, self.path)

    def on_interrupt(self):
        self.interrupted = True

    def on_fit_end(self):
        if not self.interrupted and is_main_process():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        if is_main_process():
            release_lock(self.path, id(self))
        self.resume_epoch = 0

    def __repr__(self):
        return f"AutoResume(path={self.path!r})"


# -- one live fit per state file ------------------------------------------------------------------

_HELD = {}  # lock path -> [open file whose flock this process holds, id of the AutoResume owning it]


def _lock_path(path):
    path = os.path.abspath(path)
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")


def hold_lock(path, owner=None):
    """Take the exclusive lock of state file `path`, or raise RuntimeError naming the live process that has it.

    `flock` locks die with their process (SIGKILL included), so a stale lock file never blocks; the
    pid written into it only serves the message. In this process a new `owner` takes a held lock
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
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
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
        f.close()  # the holder removed the file between our open and flock: lock the new one
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
    f.close()  # closing the descriptor releases the flock


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
