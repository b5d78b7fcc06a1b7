"""Metrics from outside pyluz: torchmetrics objects and plain functions ``fn(preds, target)``.

``metrics=`` (in ``setup``, ``MetricSet`` and ``evaluate``) turns them into :class:`Metric`
instances with :func:`as_metric`, so the engine handles every metric the same way: a fresh,
reset copy per epoch and phase, state on the training device, summed over DDP ranks at the end
of a phase.

Example::

    import torchmetrics

    def mae(preds, target):
        return (preds - target).abs().mean()

    model = pyluz.setup(Net, loss=nn.MSELoss(), optimizer=torch.optim.Adam,
                        metrics=[torchmetrics.R2Score(), mae])   # records: "r2score", "mae"
"""

from __future__ import annotations

import functools

import torch

from ..checks import check_callable, check_optional_str, fail, message
from .base import Metric, _torchmetrics_classes, host_ratio

__all__ = ["TorchMetric", "FunctionMetric", "as_metric"]


def _plain(value):
    """A computed torchmetrics value as Python numbers: float, list of floats, or dict of them."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return float(value) if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class TorchMetric(Metric):
    """A ``torchmetrics.Metric`` used as a pyluz metric (``metrics=`` wraps them for you).

    Each epoch and phase gets ``metric.clone()``, reset, so nothing carries over between
    epochs, training and validation. Its state moves to the training device with the metric.
    Under DDP the engine asks torchmetrics to synchronise at the end of each phase
    (``metric.sync()``, torchmetrics' own gather and reductions, so "cat" states such as
    AUROC's are exact) and ``compute()`` then gives the global value; torchmetrics' own
    sync-on-compute is switched off so that ``evaluate()`` (not sharded) is never reduced twice.
    ``name`` is the display name (records use it lowercased); default: the class name.

    >>> import torchmetrics  # doctest: +SKIP
    >>> TorchMetric(torchmetrics.classification.MulticlassF1Score(3), name="F1").name  # doctest: +SKIP
    'F1'
    """

    def __init__(self, metric, name=None):
        classes = _torchmetrics_classes()
        if classes is None or not isinstance(metric, classes[0]):
            raise TypeError(message("metric", "a torchmetrics.Metric instance", type(metric).__name__, "TorchMetric"))
        check_optional_str(name, "name", owner="TorchMetric")
        self.metric = metric
        self.abbrev = name or type(metric).__name__

    def fresh(self) -> "TorchMetric":
        clone = self.metric.clone()
        clone.reset()
        # The engine decides when to synchronise (reduce_state, only for DDP fits).
        clone.sync_on_compute = False
        clone._to_sync = False
        return TorchMetric(clone, name=self.abbrev)

    def to(self, device) -> "TorchMetric":
        self.metric.to(torch.device(device))
        return self

    def update(self, preds, target):
        self.metric.update(preds, target)

    def compute(self):
        return _plain(self.metric.compute())

    def reduce_state(self, all_reduce) -> None:
        # torchmetrics knows how each of its states combines (sum, mean, cat, ...): let it gather.
        self.metric.sync(should_sync=True)

    def state_dict(self) -> dict:
        """A copy of the torchmetrics states (``add_state`` names: tensors, and lists of tensors for
        "cat" states) and the update count, so an AutoResume checkpoint inside an epoch continues it.
        (torchmetrics' own ``state_dict`` skips non-persistent states, its default.)

        >>> import torchmetrics  # doctest: +SKIP
        >>> m = TorchMetric(torchmetrics.MeanMetric()).fresh()  # doctest: +SKIP
        >>> m.update(torch.tensor([1.0, 3.0]), None)  # doctest: +SKIP
        >>> again = TorchMetric(torchmetrics.MeanMetric()).fresh()  # doctest: +SKIP
        >>> again.load_state_dict(m.state_dict()); again.compute()  # doctest: +SKIP
        2.0
        """
        metric = self.metric
        states = {}
        for name in metric._defaults:
            value = getattr(metric, name)
            if isinstance(value, torch.Tensor):
                states[name] = value.detach().clone()
            elif isinstance(value, list):
                states[name] = [v.detach().clone() for v in value]
            else:
                raise TypeError(
                    f"TorchMetric {self.name}: state {name!r} is a {type(value).__name__}, not a tensor or a "
                    "list of tensors, so it can't be checkpointed inside an epoch."
                )
        return {"states": states, "update_count": int(metric._update_count)}

    def load_state_dict(self, state: dict) -> None:
        """Put back what :meth:`state_dict` returned (then :meth:`to` moves it to the device in use)."""
        metric = self.metric
        saved = state.get("states") if isinstance(state, dict) else None
        if not isinstance(saved, dict) or set(saved) != set(metric._defaults):
            got = sorted(saved) if isinstance(saved, dict) else type(state).__name__
            raise ValueError(
                f"TorchMetric {self.name}: the saved state holds {got}, this {type(metric).__name__} has the "
                f"states {sorted(metric._defaults)}; resume with the same metrics."
            )
        for name, value in saved.items():
            setattr(metric, name, list(value) if isinstance(value, (list, tuple)) else value)
        metric._update_count = int(state.get("update_count", 0))
        metric._computed = None  # a cached value from before the load is stale


def function_name(fn) -> str:
    """The records name of a metric function: its ``__name__``, a partial's function name, or the
    class name of a callable object (e.g. ``nn.L1Loss()``)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__name__", None)
    if name is None:
        name = type(fn).__name__
    if name == "<lambda>":
        raise ValueError(
            "a lambda has no name to record its values under: define it with `def`, or pass "
            'pyluz.metrics.FunctionMetric(fn, name="...")'
        )
    return name


def _batch_size(preds, target):
    for value in (target, preds):
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return value.shape[0]
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor) and value[0].dim() > 0:
            return value[0].shape[0]
    return 1


class FunctionMetric(Metric):
    """A function ``fn(preds, target) -> tensor`` as a metric: its mean over the samples.

    ``fn`` returns the batch mean (a scalar) or one value per sample (shape ``(batch,)``). Batch
    means are weighted by the batch size, so a smaller last batch counts for its rows only and
    the epoch value is the mean over all samples (the value of ``fn`` on the whole data for
    mean-type functions). The state (a sum and a count) stays on the device and is summed over
    DDP ranks. ``name`` defaults to the function's name (``metrics=[fn]`` wraps it for you).

    >>> import torch
    >>> def abs_err(preds, target):
    ...     return (preds - target).abs().mean()
    >>> m = FunctionMetric(abs_err)
    >>> m.update(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 2.0, 3.0]))  # batch mean 1/3
    >>> m.update(torch.tensor([5.0]), torch.tensor([3.0]))                      # batch mean 2
    >>> m.name, round(m.compute(), 4)                                            # (1 + 2) / 4 rows
    ('abs_err', 0.75)
    """

    def __init__(self, fn, name=None):
        if isinstance(fn, type):  # a class is callable, but builds an object instead of computing a value
            fail("fn", "a function fn(preds, target) -> tensor, not a class", fn, "FunctionMetric", TypeError)
        check_callable(fn, "fn", "a function fn(preds, target) -> tensor", owner="FunctionMetric")
        check_optional_str(name, "name", owner="FunctionMetric")
        self.fn = fn
        self.abbrev = name if name is not None else function_name(fn)
        self.total = torch.zeros((), dtype=torch.float64)
        self.count = torch.zeros((), dtype=torch.int64)

    def update(self, preds, target):
        value = self.fn(preds, target)
        if not isinstance(value, torch.Tensor):
            value = torch.tensor(float(value))
        value = value.detach()
        if value.numel() == 1:
            n = _batch_size(preds, target)
            self.total += value.reshape(()).to(self.total.dtype) * n
            self.count += n
        elif value.dim() == 1 and value.shape[0] == _batch_size(preds, target):
            self.total += value.to(self.total.dtype).sum()
            self.count += value.shape[0]
        else:
            raise ValueError(
                f"{self.name}: the metric function must return a scalar (the batch mean) or one value "
                f"per sample, got a tensor of shape {tuple(value.shape)}"
            )

    def compute(self):
        return host_ratio(self.total, self.count)

    def __repr__(self) -> str:
        return f"FunctionMetric({self.abbrev!r})"


def as_metric(value, where="`metrics`") -> list:
    """``value`` as a list of pyluz metrics: a :class:`Metric` as is, a torchmetrics ``Metric`` as
    :class:`TorchMetric`, a ``MetricCollection`` as one :class:`TorchMetric` per member (named by
    its keys), any other function as :class:`FunctionMetric`. ``where`` names the argument in errors.

    >>> [m.name for m in as_metric(max)]
    ['max']
    """
    if isinstance(value, Metric):
        return [value]
    if isinstance(value, type):
        raise TypeError(
            f"{where} is the class {value.__name__}, not an instance. "
            f"Did you forget to instantiate the metric? Use {value.__name__}(...) instead."
        )
    classes = _torchmetrics_classes()
    if classes is not None:
        tm_metric, tm_collection = classes
        if isinstance(value, tm_collection):
            return [TorchMetric(m, name=key) for key, m in value.items()]
        if isinstance(value, tm_metric):
            return [TorchMetric(value)]
    if callable(value):
        try:
            return [FunctionMetric(value)]
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    raise TypeError(
        f"{where} must be a pyluz Metric, a torchmetrics metric or a function fn(preds, target) -> "
        f"tensor (a list of them, or a MetricSet), got {type(value).__name__}"
    )
