"""Mixup: `mixup()` (nnf_mixup), `MixupLoss` (nn_mixup_loss) and the `MixUp` callback (luz_callback_mixup)."""

import torch
from torch import nn

from ..checks import check_bool, check_positive, message
from .base import Callback


def mixup(x, y, weight):
    """Mix each sample of `x` with another one of the batch (luz's `nnf_mixup`).

    A random permutation `perm` of the batch (torch RNG) pairs the samples; `weight` (shape `(B,)`
    or luz's `(B, 1)`, the share of the partner) is reshaped to `x`'s rank for `x` only. Returns
    `(torch.lerp(x, x[perm], weight), ((y, y[perm]), weight))`, the target that `MixupLoss`
    understands; the returned `weight` keeps shape `(B,)`.

    Example:

    >>> x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    >>> w = torch.full((x.shape[0],), 0.3)
    >>> mixed_x, ((y1, y2), w) = pyluz.callbacks.mixup(x, y, w)
    >>> mixed_x.shape, y1.tolist() == y.tolist()
    (torch.Size([4, 3]), True)
    """
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        raise TypeError(message("x", "a tensor with a batch dimension", _describe(x), "mixup"))
    if not torch.is_floating_point(x):
        raise TypeError(message("x", "a floating point tensor", f"dtype {x.dtype}", "mixup"))
    batch = x.shape[0]
    if not isinstance(y, torch.Tensor) or y.dim() == 0 or y.shape[0] != batch:
        raise ValueError(
            message("y", f"a tensor with first dimension {batch} (the batch size of `x`)", _describe(y), "mixup")
        )
    weight = torch.as_tensor(weight, device=x.device)
    if weight.dim() > 1 and weight.shape[0] == batch and weight[0].numel() == 1:
        weight = weight.reshape(batch)  # luz's callback passes (B, 1)
    if weight.dim() != 1 or weight.shape[0] != batch:
        raise ValueError(f"mixup: `weight` must have shape ({batch},) or ({batch}, 1), got {tuple(weight.shape)}.")
    perm = torch.randperm(batch, device=x.device)
    w_x = weight.to(x.dtype).reshape(batch, *([1] * (x.dim() - 1)))
    mixed = torch.lerp(x, x[perm], w_x)
    return mixed, ((y, y[perm.to(y.device)]), weight)


def _describe(v):
    if isinstance(v, torch.Tensor):
        return f"a tensor of shape {tuple(v.shape)}"
    return type(v).__name__


def is_mixup_target(target):
    """True for the `((y1, y2), weight)` targets that `mixup()` returns."""
    return (
        isinstance(target, (tuple, list))
        and len(target) == 2
        and isinstance(target[0], (tuple, list))
        and len(target[0]) == 2
        and isinstance(target[1], torch.Tensor)
    )


def mixup_loss_value(loss, input, target):
    """`mean(lerp(loss(input, y1), loss(input, y2), weight))` with per-sample losses.

    A loss with a `reduction` attribute is switched to `"none"` for the call (and restored);
    otherwise `loss` must already return one value per sample (or per element).
    """
    (y1, y2), weight = target
    has_reduction = hasattr(loss, "reduction")
    if has_reduction:
        saved = loss.reduction
        loss.reduction = "none"
    try:
        l1 = loss(input, y1)
        l2 = loss(input, y2)
    finally:
        if has_reduction:
            loss.reduction = saved
    batch = weight.shape[0]
    if l1.dim() == 0 or l1.shape[0] != batch:
        raise ValueError(
            f"mixup loss: the loss must return one value per sample (batch {batch}), got shape "
            f"{tuple(l1.shape)}; use a loss with `reduction` (e.g. nn.CrossEntropyLoss()) or one "
            "that returns per-sample values."
        )
    w = weight.to(device=l1.device, dtype=l1.dtype).reshape(batch, *([1] * (l1.dim() - 1)))
    return torch.lerp(l1, l2, w).mean()


class MixupLoss(nn.Module):
    """Wraps a loss so it understands mixup targets (luz's `nn_mixup_loss`).

    With a target `((y1, y2), weight)` (what `mixup()` returns) it computes the per-sample losses
    against `y1` and `y2` (temporarily with `reduction="none"`), interpolates them with the
    per-sample `weight` and averages. Any other target goes to `loss` unchanged (validation).

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=pyluz.callbacks.MixupLoss(nn.CrossEntropyLoss()), optimizer=torch.optim.Adam,
    ...                     metrics=pyluz.MetricSet(valid_metrics=[pyluz.metrics.Accuracy()]))
    >>> fitted = model.set_hparams(in_features=4, out_features=2).fit((x, y), epochs=1, verbose=False,
    ...                                                               callbacks=[pyluz.callbacks.MixUp()])
    """

    def __init__(self, loss):
        super().__init__()
        if not callable(loss) or not hasattr(loss, "reduction"):
            raise TypeError(
                "MixupLoss: `loss` must be a loss module with a `reduction` attribute (such as "
                f"nn.CrossEntropyLoss()), got {type(loss).__name__}."
            )
        self.loss = loss

    def forward(self, input, target):
        if is_mixup_target(target):
            return mixup_loss_value(self.loss, input, target)
        return self.loss(input, target)


class _AutoMixupLoss:
    """`ctx.loss_fn` during training with `auto_loss=True`: mixup targets get the mixup loss."""

    def __init__(self, loss):
        self.loss = loss.loss if isinstance(loss, MixupLoss) else loss

    def __call__(self, input, target):
        if is_mixup_target(target):
            return mixup_loss_value(self.loss, input, target)
        return self.loss(input, target)


class _MeanLoss:
    """`ctx.loss_fn` in validation with `auto_loss=True, run_valid=False`: the plain loss, averaged."""

    def __init__(self, loss):
        self.loss = loss

    def __call__(self, input, target):
        return self.loss(input, target).mean()


class MixUp(Callback):
    """Mixup data augmentation (luz's `luz_callback_mixup`).

    At each training batch (and validation batch with `run_valid=True`) draws per-sample weights
    `w ~ Beta(alpha, alpha)` with torch's RNG (so `torch.manual_seed` covers it), takes
    `w = max(w, 1 - w)` and replaces `ctx.input`/`ctx.target` by `mixup(input, target, w)`.
    The loss must understand the `((y1, y2), weight)` targets: use `MixupLoss(loss)` in `setup()`,
    or `auto_loss=True` to wrap `ctx.loss_fn` during training (restored at the end of the phase);
    in validation `auto_loss` uses the mixup loss with `run_valid=True`, else the plain loss's mean.
    Train targets are no longer class labels, so put label metrics in
    `MetricSet(valid_metrics=[...])`.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam,
    ...                     metrics=pyluz.MetricSet(valid_metrics=[pyluz.metrics.Accuracy()]))
    >>> fitted = model.set_hparams(in_features=4, out_features=2).fit(
    ...     (x, y), epochs=2, valid_data=0.2, verbose=False, callbacks=[pyluz.callbacks.MixUp(alpha=0.4, auto_loss=True)])
    >>> sorted(fitted.get_metrics().query("set == 'valid'").metric.unique())
    ['acc', 'loss']
    """

    def __init__(self, alpha=0.4, run_valid=False, auto_loss=False):
        self.alpha = check_positive(alpha, "alpha", "MixUp", expected="a positive number")
        self.run_valid = check_bool(run_valid, "run_valid", "MixUp")
        self.auto_loss = check_bool(auto_loss, "auto_loss", "MixUp")
        self._saved_loss = None
        self._beta = None

    def _mix(self):
        ctx = self.ctx
        x, y = ctx.input, ctx.target
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError(
                "MixUp: the batch input and target must be tensors, got " f"{_describe(x)} and {_describe(y)}."
            )
        device = x.device
        if self._beta is None or self._beta_device != device:
            a = torch.tensor(self.alpha, device=device)
            self._beta = torch.distributions.Beta(a, a)
            self._beta_device = device
        w = self._beta.sample((x.shape[0],))
        w = torch.maximum(w, 1 - w)
        ctx.input, ctx.target = mixup(x, y, w)

    def on_train_batch_begin(self):
        self._mix()

    def on_valid_batch_begin(self):
        if self.run_valid:
            self._mix()

    def on_train_begin(self):
        if self.auto_loss:
            self._saved_loss = self.ctx.loss_fn
            self.ctx.loss_fn = _AutoMixupLoss(self._saved_loss)

    def on_valid_begin(self):
        if self.auto_loss:
            self._saved_loss = self.ctx.loss_fn
            wrap = _AutoMixupLoss if self.run_valid else _MeanLoss
            self.ctx.loss_fn = wrap(self._saved_loss)

    def _restore(self):
        if self.auto_loss and self._saved_loss is not None:
            self.ctx.loss_fn = self._saved_loss
            self._saved_loss = None

    def on_train_end(self):
        self._restore()

    def on_valid_end(self):
        self._restore()
