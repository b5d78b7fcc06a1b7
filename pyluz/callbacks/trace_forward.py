"""`TraceForward`: replay an R-defined model's forward pass as a traced program during the fit."""

from __future__ import annotations

from ..distributed import unwrap
from ..export import is_r_backed
from ..interop.capture import MAX_PROGRAMS, TracedForward
from ..interop.torch_class import is_r_object
from .base import Callback


class TraceForward(Callback):
    """Traces the model's forward once per (mode, input signature) and replays it (R's ``capture = TRUE``).

    The forward of an R ``nn_module()`` runs R code per tensor op; traced, later calls run the
    recorded aten ops without entering R (:class:`pyluz.interop.capture.TracedForward`; a fit gives
    the same weights bit for bit). A key whose forward can't be traced safely runs eagerly, with its
    reason in ``report`` (a dict: key description -> ``"traced"`` or the reason). ``inspect(submodule)``
    is the front end's static check of R code (a reason or None), called for R-defined submodules.
    Only R-defined models are traced unless ``only_r=False``. The model's own forward is put back
    at the end of the fit.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> trace = pyluz.callbacks.TraceForward(only_r=False)
    >>> fitted = model.fit((x, y), epochs=1, verbose=False, callbacks=[trace])
    >>> trace.report
    {'train, input [32, 4]': 'traced'}
    """

    def __init__(self, inspect=None, max_programs=MAX_PROGRAMS, only_r=True):
        self.inspect = inspect
        self.max_programs = max_programs
        self.only_r = only_r
        self.report = {}
        self.traced = None

    def _inspect(self, sub):
        return self.inspect(sub) if self.inspect is not None and is_r_object(sub) else None

    def on_fit_begin(self):
        model = unwrap(self.ctx.model)
        self.report = {}
        if self.only_r and not is_r_backed(model):
            return
        self._model, self._own = model, model.__dict__.get("forward")
        self.traced = TracedForward(model, inspect=self._inspect, max_programs=self.max_programs)
        model.__dict__["forward"] = self.traced

    def on_fit_end(self):
        if self.traced is None:
            return
        if self._own is None:
            self._model.__dict__.pop("forward", None)
        else:
            self._model.__dict__["forward"] = self._own
        self.report = dict(self.traced.report)
        self.traced = self._model = self._own = None
