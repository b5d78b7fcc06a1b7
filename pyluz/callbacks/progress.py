"""Progress output in luz's layout: `Epoch 3/10`, a bar per phase, then the epoch's metrics.

The bar is refreshed on a time interval, so reading metric values (a device sync) happens at most
every `interval` seconds, never per step. Where does it draw? A `Renderer`: tqdm bars in a terminal
or notebook, one line per epoch in logs, or any object with the same methods (the R package passes
a cli renderer).
"""

import numbers
import sys
import time

from ..checks import check_real
from ..distributed import is_main_process
from ..metrics import format_metric_value, metric_keys
from .base import Callback


def format_metrics(values_by_name):
    """ "Loss: 0.1234 - Acc: 0.9500" from {display_name: value}."""
    return " - ".join(f"{name}: {format_metric_value(value)}" for name, value in values_by_name.items())


#: What a renderer provides (LineRenderer, TqdmRenderer, the R package's cli renderer).
RENDERER_METHODS = ("epoch_begin", "bar_begin", "bar_update", "bar_end", "epoch_metrics", "epoch_end", "message")


class LineRenderer:
    """For logs: no bars, one line per epoch (`Epoch 2/10 - Train metrics: ... - Valid metrics: ...`)."""

    def __init__(self, file=None):
        self.file = file
        self.pending = []

    def _out(self, text):
        print(text, file=self.file or sys.stderr, flush=True)

    def epoch_begin(self, epoch, max_epochs):
        self.pending = [f"Epoch {epoch}/{max_epochs}"]

    def bar_begin(self, phase, total):
        pass

    def bar_update(self, current, metrics_text):
        pass

    def bar_end(self):
        pass

    def epoch_metrics(self, phase, text):
        self.pending.append(f"{phase.capitalize()} metrics: {text}")

    def epoch_end(self):
        if self.pending:
            self._out(" - ".join(self.pending))
        self.pending = []

    def message(self, text):
        self._out(text)


class TqdmRenderer(LineRenderer):
    """For terminals and notebooks: luz's layout with a tqdm bar per phase."""

    def __init__(self, file=None):
        super().__init__(file)
        self.bar = None

    def epoch_begin(self, epoch, max_epochs):
        self._out(f"Epoch {epoch}/{max_epochs}")

    def bar_begin(self, phase, total):
        from tqdm.auto import tqdm

        tqdm.monitor_interval = 0  # no monitor thread: front ends such as R must stay on one thread
        self.bar = tqdm(
            total=total,
            file=self.file or sys.stderr,
            leave=False,
            dynamic_ncols=True,
            mininterval=0,
            bar_format="{n_fmt}/{total_fmt} [{bar:20}] - ETA: {remaining}{postfix}"
            if total
            else "{n_fmt}/unk - Rate: {rate_fmt}{postfix}",
        )

    def bar_update(self, current, metrics_text):
        if self.bar is not None:
            self.bar.n = current
            self.bar.set_postfix_str(metrics_text, refresh=False)
            self.bar.refresh()

    def bar_end(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def epoch_metrics(self, phase, text):
        self._out(f"{phase.capitalize()} metrics: {text}")

    def epoch_end(self):
        pass


# A front end may set this to a zero-argument callable returning a renderer (the R package sets
# a cli renderer, see pyluz.interop.progress); None means tqdm in terminals, lines in logs.
renderer_factory = None


def default_renderer():
    if renderer_factory is not None:
        return renderer_factory()
    return TqdmRenderer() if _interactive_stderr() else LineRenderer()


def _interactive_stderr():
    return _in_notebook() or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


def _in_notebook():
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython() if hasattr(shell, "get_ipython") else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def default_verbose():
    """luz's `verbose = NULL`: True when stderr is a terminal or we run in a notebook."""
    return _interactive_stderr()


class Progress(Callback):
    """Prints luz-style progress when `ctx.verbose` (on rank 0 only under DDP).

    Refreshes at most every `interval` seconds; mid-epoch values under DDP are rank 0's own.
    """

    def __init__(self, renderer=None, interval=0.1):
        missing = [m for m in RENDERER_METHODS if not callable(getattr(renderer, m, None))]
        if renderer is not None and missing:
            raise TypeError(
                f"Progress: `renderer` must have the methods {', '.join(RENDERER_METHODS)} (like "
                f"LineRenderer); {type(renderer).__name__} lacks {', '.join(missing)}."
            )
        check_real(interval, "interval", "Progress", lo=0, expected="a number of seconds >= 0")
        self.renderer = renderer
        self.interval = interval
        self.bar_open = False
        self.count = 0
        self.next_refresh = 0.0
        self.show = None  # decided when the run starts

    def _start(self):
        # Once per run: `ctx.verbose`, and only on rank 0 under DDP (pyluz.distributed).
        self.show = bool(self.ctx.verbose) and is_main_process()
        if self.renderer is None and self.show:
            self.renderer = default_renderer()
        wanted = getattr(self.renderer, "refresh_interval", None)  # e.g. luz's forced bars: every step
        if isinstance(wanted, numbers.Real) and not isinstance(wanted, bool):
            self.interval = float(wanted)

    def on_fit_begin(self):
        self._start()

    def on_predict_begin(self):
        self._start()
        self._bar_begin("predict")

    def on_epoch_begin(self):
        if self.show:
            self.renderer.epoch_begin(self.ctx.epoch, self.ctx.max_epochs)

    def _bar_begin(self, phase):
        if self.show:
            from ..data import num_batches

            self.count = 0
            self.next_refresh = 0.0
            self.renderer.bar_begin(phase, num_batches(self.ctx.data))
            self.bar_open = True

    def _tick(self):
        self.count += 1
        now = time.perf_counter()
        if now >= self.next_refresh:
            self.next_refresh = now + self.interval
            self.renderer.bar_update(self.count, self._current_metrics())

    def _current_metrics(self):
        phase = "train" if self.ctx.training else "valid"
        values = {}
        for m in self.ctx.metrics.get(phase, []):
            values[m.name] = m.compute()
        return format_metrics(values)

    def _bar_end(self):
        if self.show:
            self.renderer.bar_update(self.count, self._current_metrics())  # the final state, once per phase
            self._close_bar()

    def _close_bar(self):
        if self.bar_open:
            self.bar_open = False
            self.renderer.bar_end()

    def on_train_begin(self):
        self._bar_begin("train")

    def on_valid_begin(self):
        if self.show is None:  # evaluate() starts with the validation loop
            self._start()
        self._bar_begin("valid")

    def on_train_batch_end(self):
        if self.show:
            self._tick()

    on_valid_batch_end = on_train_batch_end

    def on_predict_batch_end(self):
        if self.show:
            self.count += 1
            now = time.perf_counter()
            if now >= self.next_refresh:
                self.next_refresh = now + self.interval
                self.renderer.bar_update(self.count, "")

    def on_train_end(self):
        self._bar_end()

    def on_valid_end(self):
        self._bar_end()

    def on_predict_end(self):
        self._bar_end()

    def on_epoch_end(self):
        if not self.show:
            return
        for phase in ("train", "valid"):
            metrics = self.ctx.metrics.get(phase) or []
            values = self.ctx.get_metrics(phase, self.ctx.epoch)
            # Looked up by records key (callbacks may log other values there too); shown by abbrev.
            shown = {m.name: values[k] for m, k in zip(metrics, metric_keys(metrics), strict=True) if k in values}
            if shown:
                self.renderer.epoch_metrics(phase, format_metrics(shown))
        self.renderer.epoch_end()

    # A stop or Ctrl-C in the middle of a phase skips the phase's end: close its bar before more output.
    def on_early_stopping(self):
        if self.show:
            self._close_bar()
            self.renderer.message(f"Early stopping at epoch {self.ctx.epoch} of {self.ctx.max_epochs}")

    def on_interrupt(self):
        if self.show:
            self._close_bar()
