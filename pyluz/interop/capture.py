"""Tracing an R-defined module's forward pass, so later calls don't enter R (``capture = TRUE``).

Every tensor op an R ``nn_module()``'s forward runs crosses from R to Python. :class:`TracedForward`
runs that forward once per *key* (train/eval mode, grad mode, and the input signature: the
structure, shapes, dtypes, devices of the nested input) under
``make_fx(..., pre_dispatch=True)`` over ``torch.func.functional_call``, which records the aten
ops it dispatches with the live parameters and buffers as inputs; later calls with that key
replay the recorded program. The program is recorded above autograd, so autograd, dropout
(the same RNG draws as eagerly) and in-place buffer updates (BatchNorm's running stats) happen
on replay exactly as in the eager forward.

The trace leaves no trace: the torch RNG states, the buffers and the input tensors are restored
after it, and the first real call then runs through the program. Parameters, buffers,
``state_dict``, ``train()``/``eval()`` stay those of the module.

A key falls back to the eager forward, with a reason (:attr:`TracedForward.report`), when the
forward reads a value back to the host while traced (``item()``, ``numpy()``, ``tolist()``,
``bool()`` on a tensor: R's ``$item()``, ``as_array()``, ``if`` on a tensor), when ``inspect``
(the R front end's static check of the R code) names a hazard, when tracing fails, or when
``max_programs`` programs exist already (variable-length inputs). :meth:`invalidate` drops
every program (the R front end calls it when a module field is assigned after capture).

What ran is kept per key (:class:`KeyRecord`: status ``traced`` / ``eager`` / ``dropped`` with
its reason, and how many traces, replays and eager calls there were); :meth:`TracedForward.frame`
and :meth:`TracedForward.summary` are the one place both front ends format it from.

Known limits: an in-place edit of a parameter's ``.data`` that replaces the tensor, a Python
``setattr`` on the module after capture, and values the forward reads from elsewhere (globals,
constants created from R values) are frozen at trace time; autocast regions are not keys.
"""

from __future__ import annotations


import weakref
from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode

from ..nested import children, tensors

__all__ = [
    "HostReadError",
    "KeyRecord",
    "TracedForward",
    "signature",
    "field_assigned",
    "TRACED",
    "EAGER",
    "DROPPED",
    "FRAME_FIELDS",
]

TRACED = "traced"  # a program is held for the key; its calls replay it
EAGER = "eager"  # the key runs the eager forward (the reason says why)
DROPPED = "dropped"  # the key's program was dropped (the reason says why); its next call traces again
DROP_REASON = "a module field was assigned after tracing"
FRAME_FIELDS = ("key", "status", "reason", "traces", "drops", "replays", "eager_calls")  # KeyRecord's
MAX_PROGRAMS = 8

_HOST_READS = {
    torch.Tensor.item: "reads a value back to the host (`$item()`)",
    torch.Tensor.tolist: "reads a value back to the host (`as_array()` or `tolist()`)",
    torch.Tensor.numpy: "reads a value back to the host (`as_array()`)",
    torch.Tensor.__bool__: "reads a value back to the host (`if` or a logical test on a tensor)",
    torch.Tensor.__float__: "reads a value back to the host (`as.numeric()` on a tensor)",
    torch.Tensor.__int__: "reads a value back to the host (`as.integer()` on a tensor)",
}


class HostReadError(RuntimeError):
    """Raised inside a traced forward that reads a tensor's value back to the host."""


class _HostReadProbe(TorchFunctionMode):
    """Raises :class:`HostReadError` on every host read while a forward is traced."""

    def __init__(self):
        super().__init__()
        self.reason = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        reason = _HOST_READS.get(func)
        if reason is not None:
            self.reason = reason
            raise HostReadError(f"pyluz tracing: the forward {reason}; it runs eagerly instead")
        return func(*args, **(kwargs or {}))


def signature(value):
    """A hashable description of a nested input: structure, and each tensor's shape/dtype/device."""
    if isinstance(value, torch.Tensor):
        return (tuple(value.shape), value.dtype, value.device, value.requires_grad)
    parts = children(value)
    if parts is None:
        try:
            hash(value)
        except TypeError:
            return (type(value), id(value))
        return (type(value), value)
    keys = tuple(value.keys()) if isinstance(value, dict) else None
    return (type(value), keys, tuple(signature(v) for v in parts))


def _describe(key):
    training, grad, sig = key
    mode = "train" if training else "eval"
    return f"{mode}{'' if grad else ' (no grad)'}, input {', '.join(_tensor_text(t) for t in _tensor_sigs(sig))}"


def _tensor_text(sig):
    shape, dtype, device, requires_grad = sig
    text = str(list(shape))
    if dtype != torch.float32:
        text += f" {str(dtype).removeprefix('torch.')}"
    if device.type != "cpu":
        text += f" {device}"
    return text + (" (requires grad)" if requires_grad else "")


def _tensor_sigs(sig):
    if isinstance(sig, tuple) and len(sig) == 4 and isinstance(sig[1], torch.dtype):
        return [sig]
    if isinstance(sig, tuple) and len(sig) == 3 and isinstance(sig[2], tuple):
        return [s for part in sig[2] for s in _tensor_sigs(part)]
    return []


def _count(n, what):
    return f"{n} {what}{'' if n == 1 else 's'}"


@dataclass
class KeyRecord:
    """What ran for one key: its status now, the reason (eager / dropped), and the counts of calls."""

    key: str
    status: str = TRACED
    reason: str | None = None
    traces: int = 0  # programs recorded (more than one after drops)
    drops: int = 0  # times its program was dropped
    replays: int = 0  # calls that ran a program
    eager_calls: int = 0  # calls that ran the eager forward

    @property
    def text(self):
        """``traced``, ``eager: <reason>`` or ``dropped: <reason>`` (the status a report shows)."""
        return self.status if self.reason is None else f"{self.status}: {self.reason}"

    def line(self):
        """One line for a ``Tracing:`` summary: the key, its status and what ran."""
        ran = [_count(n, what) for n, what in ((self.replays, "replay"), (self.eager_calls, "eager call")) if n]
        if self.traces > 1 or self.drops:
            ran.insert(0, f"{_count(self.traces, 'trace')}, {_count(self.drops, 'drop')}")
        return f"{self.key}: {self.text}" + (f" ({', '.join(ran)})" if ran else "")


class TracedForward:
    """A callable that replaces ``module.forward``: it traces it once per key, then replays.

    ``eager`` is the forward to trace (by default ``module.forward``); ``inspect(submodule)``
    (optional) returns a reason not to trace (a string) or ``None`` for each submodule that has an
    R forward. ``records`` holds a :class:`KeyRecord` per key (what ran); ``report`` maps each
    key's description to its status text: ``"traced"`` (its calls replay a program), ``"eager: <reason>"``
    or ``"dropped: <reason>"`` (the program was dropped; the next call traces again).

    Example:

    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.5))
    >>> traced = TracedForward(net)
    >>> x = torch.randn(8, 4)
    >>> torch.manual_seed(1); eager = net(x)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> torch.manual_seed(1); replayed = traced(x)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> torch.equal(eager, replayed), traced.report
    (True, {'train, input [8, 4]': 'traced'})
    >>> traced.summary()
    '1 program in use; train, input [8, 4]: traced (1 replay)'
    """

    def __init__(self, module, eager=None, inspect=None, max_programs=MAX_PROGRAMS):
        self.module = module
        self.eager = eager if eager is not None else module.forward
        self.inspect = inspect
        self.max_programs = max_programs
        self.programs = {}  # key -> program, or None where the key runs eagerly
        self.records = {}  # key -> KeyRecord, in the order keys were first seen
        self.dropped = []  # why the programs were dropped, once per time
        self._static_reason = False  # not checked yet
        self._tracing = False

    # -- calls ------------------------------------------------------------------------------------

    def __call__(self, *args, **kwargs):
        if self._tracing:
            return self.eager(*args, **kwargs)
        key = (self.module.training, torch.is_grad_enabled(), signature((args, kwargs)))
        program = self.programs.get(key, False)
        if program is False:
            program = self._capture(key, args, kwargs)
        if program is None:
            self.records[key].eager_calls += 1
            return self.eager(*args, **kwargs)
        self.records[key].replays += 1
        params = dict(self.module.named_parameters())
        buffers = dict(self.module.named_buffers())
        return program(params, buffers, args, kwargs)

    def invalidate(self, reason=DROP_REASON):
        """Drop every program (the next call with each key traces again); eager keys stay eager.

        Returns whether there was a program to drop.
        """
        held = [key for key, program in self.programs.items() if program is not None]
        if not held:
            return False
        for key in held:
            del self.programs[key]
            record = self.records[key]
            record.status, record.reason = DROPPED, reason
            record.drops += 1
        self.dropped.append(reason)
        self._static_reason = False
        return True

    @property
    def report(self):
        """``{key description: status text}`` (see :attr:`KeyRecord.text`)."""
        return {r.key: r.text for r in self.records.values()}

    def frame(self):
        """Columns (a dict of lists) of one row per key: key, status, reason, traces, drops, replays, eager_calls."""
        return {f: [getattr(r, f) for r in self.records.values()] for f in FRAME_FIELDS}

    def summary(self):
        """What tracing did, in one line (the ``Tracing:`` line of a verbose fit)."""
        if not self.records:
            return "nothing traced"
        held = self.traced_count
        head = f"{_count(held, 'program')} in use" if held else "no program in use"
        return "; ".join([head] + [r.line() for r in self.records.values()])

    @property
    def traced_count(self):
        """How many programs are held."""
        return sum(p is not None for p in self.programs.values())

    # -- capture ----------------------------------------------------------------------------------

    def _capture(self, key, args, kwargs):
        reason = self._static()
        program = None
        if reason is None and self.traced_count >= self.max_programs:
            reason = f"more than {self.max_programs} input signatures (variable-length inputs?)"
        if reason is None:
            program, reason = self._trace(args, kwargs)
        self.programs[key] = program
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = KeyRecord(_describe(key))
        if program is not None:
            record.status, record.reason = TRACED, None
            record.traces += 1
        else:
            record.status, record.reason = EAGER, reason
        return program

    def _static(self):
        if self._static_reason is False:
            self._static_reason = None
            if self.inspect is None:
                for sub in self.module.modules():
                    sub.__dict__["_pyluz_traced"] = weakref.ref(self)
            else:
                for name, sub in self.module.named_modules():
                    sub.__dict__["_pyluz_traced"] = weakref.ref(self)  # see field_assigned()
                    found = self.inspect(sub)
                    if found:
                        where = f"`{name}`: " if name else ""
                        self._static_reason = f"{where}{found}"
                        break
        return self._static_reason

    def _trace(self, args, kwargs):
        module = self.module
        params = dict(module.named_parameters())
        buffers = dict(module.named_buffers())
        probe = _HostReadProbe()

        def forward(params, buffers, args, kwargs):
            with probe:
                return torch.func.functional_call(module, (params, buffers), tuple(args), kwargs, strict=False)

        from torch.fx.experimental.proxy_tensor import make_fx

        saved_buffers = {n: b.detach().clone() for n, b in buffers.items()}
        inputs = tensors((args, kwargs))
        saved_inputs = [t.detach().clone() for t in inputs]
        devices = sorted({t.device.index or 0 for t in tensors((params, buffers, args, kwargs)) if t.is_cuda})
        self._tracing = True
        try:
            with torch.random.fork_rng(devices=devices):
                program = make_fx(forward, pre_dispatch=True)(params, buffers, args, kwargs)
        except Exception as e:  # noqa: BLE001 - any failure means: run eagerly, say why
            if probe.reason is not None:
                return None, probe.reason
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return None, f"tracing failed ({type(e).__name__}: {msg[:200]})"
        finally:
            self._tracing = False
            with torch.no_grad():
                for n, b in buffers.items():
                    b.copy_(saved_buffers[n])
                for t, s in zip(inputs, saved_inputs, strict=True):
                    t.copy_(s)
        if probe.reason is not None:  # a host read that the forward caught itself
            return None, probe.reason
        return program, None


def field_assigned(module):
    """A field of `module` was assigned (R's ``self$x <- value``): drop the programs tracing it."""
    ref = module.__dict__.get("_pyluz_traced")
    traced = ref() if ref is not None else None
    if traced is not None:
        traced.invalidate()
