"""`TraceForward`: replay an R-defined model's forward pass as a traced program (fit, predict, evaluate)."""

from __future__ import annotations

from ..distributed import unwrap
from ..export import is_r_backed
from ..interop.capture import FRAME_FIELDS, MAX_PROGRAMS, TracedForward
from ..interop.torch_class import is_r_object
from .base import Callback


class TraceForward(Callback):
    """Traces the model's forward once per (mode, input signature) and replays it (R's ``capture = TRUE``).

    The forward of an R ``nn_module()`` runs R code per tensor op; traced, later calls run the
    recorded aten ops without entering R (:class:`pyluz.interop.capture.TracedForward`; a fit gives
    the same weights bit for bit). A key whose forward can't be traced safely runs eagerly, with its
    reason. ``inspect(submodule)`` is the front end's static check of R code (a reason or None),
    called for R-defined submodules. Only R-defined models are traced unless ``only_r=False``.

    The traced forward is in place from the start to the end of a fit (validation included), of
    a predict, and of an evaluate's validation pass; the model's own forward is put back after.
    The programs are kept between runs (they take the live parameters as inputs), so the
    ``Fitted`` of a fit with this callback (``fitted.capture``) replays the validation's eval
    programs in ``predict()``/``evaluate()``. ``report`` (key -> status text), ``frame()`` (one row
    per key: status, reason, counts of traces, drops, replays, eager calls) and ``summary()`` tell
    what ran, over every run so far.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> trace = pyluz.callbacks.TraceForward(only_r=False)
    >>> fitted = model.fit((x, y), epochs=1, verbose=False, callbacks=[trace])
    >>> trace.report, fitted.capture is trace
    ({'train, input [32, 4]': 'traced'}, True)
    >>> fitted.predict(x[:3], verbose=False).shape, trace.summary()
    (torch.Size([3, 2]), '2 programs in use; train, input [32, 4]: traced (2 replays); eval (no grad), input [3, 4]: traced (1 replay)')
    """

    def __init__(self, inspect=None, max_programs=MAX_PROGRAMS, only_r=True):
        self.inspect = inspect
        self.max_programs = max_programs
        self.only_r = only_r
        self.traced = None  # the TracedForward, kept after a run
        self._installed = None  # (model, its own forward) while the traced forward is in place
        self._valid_only = False

    def _inspect(self, sub):
        return self.inspect(sub) if self.inspect is not None and is_r_object(sub) else None

    # -- putting the traced forward in place ------------------------------------------------------

    def install(self, model):
        """Put the traced forward in place on `model` (unwrapped from DDP); False when it isn't traced."""
        model = unwrap(model)
        if self._installed is not None or (self.only_r and not is_r_backed(model)):
            return False
        if self.traced is None or self.traced.module is not model:
            self.traced = TracedForward(model, inspect=self._inspect, max_programs=self.max_programs)
        self._installed = (model, model.__dict__.get("forward"))
        model.__dict__["forward"] = self.traced
        return True

    def uninstall(self):
        """Put the model's own forward back (nothing when not in place)."""
        if self._installed is None:
            return
        model, own = self._installed
        if own is None:
            model.__dict__.pop("forward", None)
        else:
            model.__dict__["forward"] = own
        self._installed = None

    def on_fit_begin(self):
        self.install(self.ctx.model)

    def on_fit_end(self):
        self.uninstall()

    def on_predict_begin(self):
        self.install(self.ctx.model)

    def on_predict_end(self):
        self.uninstall()

    def on_valid_begin(self):  # evaluate(): a validation pass outside a fit
        self._valid_only = self.install(self.ctx.model)

    def on_valid_end(self):
        if self._valid_only:
            self._valid_only = False
            self.uninstall()

    # -- what ran ---------------------------------------------------------------------------------

    @property
    def report(self):
        """``{key description: "traced" | "eager: <reason>" | "dropped: <reason>"}``; empty before a run."""
        return self.traced.report if self.traced is not None else {}

    def frame(self):
        """One row per key, as columns (see :meth:`pyluz.interop.capture.TracedForward.frame`)."""
        if self.traced is None:
            return {f: [] for f in FRAME_FIELDS}
        return self.traced.frame()

    def summary(self):
        """What tracing did, in one line (the ``Tracing:`` line of verbose output)."""
        return self.traced.summary() if self.traced is not None else "nothing traced"
