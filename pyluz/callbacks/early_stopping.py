"""`EarlyStopping`: stop when a monitored metric stops improving (luz_callback_early_stopping)."""

from ..checks import check_int, check_real
from ..control import StopTraining
from .monitor import MonitorCallback


class EarlyStopping(MonitorCallback):
    """Stops training when `monitor` has not improved for `patience` epochs.

    `monitor` is `<set>_<metric>[_<opt>]` (case-insensitive), e.g. "valid_loss", "train_acc",
    "train_loss_generator". `mode` is "min", "max" or "zero" (closest to zero); an epoch improves
    when it beats the best value by more than `min_delta`. The first epoch only sets the best value,
    unless a `baseline` is given (then the first epoch must beat the baseline). Training stops at the
    first epoch where the count of epochs without improvement reaches `max(patience, 1)` (so the
    default `patience=0` stops at the first epoch without improvement; luz always stopped at epoch
    2), but never before `min_epochs` (`fit(epochs=(min, max))`). Stopping finishes the epoch, calls
    `on_early_stopping` and `on_fit_end`, and fit returns normally. Weight `inf`: runs after the
    other callbacks of `on_epoch_end`.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> cb = pyluz.callbacks.EarlyStopping(monitor="valid_loss", patience=1, min_delta=10.0)
    >>> fitted = model.fit((x, y), epochs=100, valid_data=0.25, verbose=False, callbacks=[cb])
    >>> cb.stopped_epoch  # the epoch training stopped at, or None
    2
    """

    weight = float("inf")

    def __init__(self, monitor="valid_loss", min_delta=0, patience=0, mode="min", baseline=None):
        patience = check_int(patience, "patience", min_value=0)
        if baseline is not None:
            baseline = check_real(baseline, "baseline", expected="None or a number", finite=False)
        self.patience = patience
        self.baseline = baseline
        super().__init__(monitor, mode, min_delta)

    def reset(self):
        self.best = self.baseline
        self.counter = 0
        self.stopped_epoch = None

    def on_epoch_end(self):
        ctx = self.ctx
        qty = self.quantity()
        if self.best is None:
            self.best = qty
            return
        if self.improved(qty):
            self.best = qty
            self.counter = 0
        else:
            self.counter += 1
        if self.counter >= max(self.patience, 1) and ctx.epoch >= ctx.min_epochs:
            self.stopped_epoch = ctx.epoch
            raise StopTraining(f"Early stopping at epoch {ctx.epoch} of {ctx.max_epochs}")

    # Progress prints "Early stopping at epoch X of Y" when verbose; nothing to add here.

    def state_dict(self):
        return {"best": self.best, "counter": self.counter}

    def load_state_dict(self, state):
        self.best = None if state.get("best") is None else float(state["best"])
        self.counter = int(state.get("counter", 0))
        self.mark_restored()

    def __repr__(self):
        return (
            f"EarlyStopping(monitor={self.monitor!r}, min_delta={self.min_delta}, patience={self.patience}, "
            f"mode={self.mode!r}, baseline={self.baseline})"
        )
