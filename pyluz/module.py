"""`setup()` and the LuzModule it returns: a module plus loss, optimizer, metrics and hparams."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .accelerator import Accelerator
from .checks import check_callable, message
from .metrics import as_metric_set
from .model_file import check_built
from .results import Fitted
from .runner import run_fit

MODULE_EXPECTED = "an nn.Module subclass, a factory or a module instance"


class LuzModule:
    """A module ready to train: what `setup()` returns. Immutable; every `set_*` returns a new one.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> fitted = (pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
    ...           .set_hparams(in_features=4, out_features=2).set_opt_hparams(lr=1e-3)
    ...           .fit((x, y), epochs=2, verbose=False))
    >>> len(fitted.records["metrics"]["train"])
    2
    """

    def __init__(
        self,
        module: Any,
        loss: Callable | None = None,
        optimizer: Callable | None = None,
        metrics: Any = None,
        backward: Callable | None = None,
        hparams: dict | None = None,
        opt_hparams: dict | None = None,
    ) -> None:
        self.module = module
        self.loss = loss
        self.optimizer = optimizer
        self.metrics = metrics
        self.backward = backward
        self.hparams = dict(hparams or {})
        self.opt_hparams = dict(opt_hparams or {})

    def _replace(self, **changes):
        fields = dict(
            module=self.module,
            loss=self.loss,
            optimizer=self.optimizer,
            metrics=self.metrics,
            backward=self.backward,
            hparams=self.hparams,
            opt_hparams=self.opt_hparams,
        )
        fields.update(changes)
        return LuzModule(**fields)

    def set_hparams(self, **hparams: Any) -> LuzModule:
        """Arguments for building the module (replaces earlier ones, as in luz)."""
        if isinstance(self.module, nn.Module):
            raise ValueError(
                "`set_hparams()` needs a module class or factory, but `setup()` got an already built "
                f"{type(self.module).__name__} instance; pass the class instead."
            )
        return self._replace(hparams=hparams)

    def set_opt_hparams(self, **opt_hparams: Any) -> LuzModule:
        """Arguments for the optimizer factory or `set_optimizers()` (e.g. `lr=1e-3`)."""
        return self._replace(opt_hparams=opt_hparams)

    def fit(
        self,
        data: Any,
        epochs: int | tuple[int, int] = 10,
        callbacks: list | None = None,
        valid_data: Any = None,
        accelerator: Accelerator | None = None,
        verbose: bool | None = None,
        dataloader_options: dict | None = None,
    ) -> Fitted:
        """Train and return a `Fitted`. See `pyluz.fit` for the arguments."""
        run = run_fit(
            self,
            data,
            epochs=epochs,
            callbacks=callbacks,
            valid_data=valid_data,
            accelerator=accelerator,
            verbose=verbose,
            dataloader_options=dataloader_options,
        )
        return Fitted(
            model=run.model,
            records=run.records,
            luz_module=self,
            opt_names=run.opt_names,
            optimizer_states=run.optimizer_states,
            capture=run.capture,
        )

    def __repr__(self):
        name = getattr(self.module, "__name__", type(self.module).__name__)
        return f"<LuzModule {name} hparams={self.hparams} opt_hparams={self.opt_hparams}>"

    # -- building the pieces at fit time ------------------------------------------------------
    def build_model(self):
        if isinstance(self.module, nn.Module):
            return self.module
        model = check_built(self.module(**self.hparams))
        if type(model).forward is nn.Module.forward and "forward" not in vars(model):
            model.forward = _identity  # luz: a module without forward (e.g. a GAN's container) passes its input
        check_module_methods(model, self.loss, self.optimizer)
        return model

    def build_optimizers(self, model):
        if self.optimizer is not None:
            opts = self.optimizer(model.parameters(), **self.opt_hparams)
        else:
            opts = model.set_optimizers(**self.opt_hparams)
        return as_optimizer_dict(opts)

    def loss_fn(self, model):
        return self.loss if self.loss is not None else getattr(model, "loss", None)

    def backward_fn(self, model):
        if self.backward is not None:
            return self.backward
        return getattr(model, "backward", None) or _backward


def _identity(x):
    return x


def _backward(loss):
    loss.backward()


def as_optimizer_dict(opts):
    """A single optimizer becomes {"opt": it}; a dict keeps its names and order."""
    if isinstance(opts, torch.optim.Optimizer):
        return {"opt": opts}
    if isinstance(opts, dict) and opts and all(isinstance(o, torch.optim.Optimizer) for o in opts.values()):
        return dict(opts)
    raise TypeError(
        "The optimizer factory / `set_optimizers()` must return a torch.optim.Optimizer or a non-empty "
        f"dict of named optimizers, got {type(opts).__name__}."
    )


def _defines(obj, name):
    return callable(getattr(obj, name, None))


def check_module_methods(module, loss, optimizer):
    """luz's checks: a loss (argument, `loss()` or `step()`) and an optimizer (argument or `set_optimizers()`)."""
    if loss is None and not (_defines(module, "loss") or _defines(module, "step")):
        raise ValueError(
            "No loss function: pass `loss=` to setup() or define a `loss(pred, target)` or `step()` "
            "method on the module."
        )
    if optimizer is None and not _defines(module, "set_optimizers"):
        raise ValueError(
            "No optimizer: pass `optimizer=` (e.g. torch.optim.Adam) to setup() or define a "
            "`set_optimizers(**opt_hparams)` method on the module."
        )


def check_training_args(loss=None, optimizer=None, metrics=None, backward=None):
    """Validate setup()'s `loss`, `optimizer`, `metrics` and `backward` (also used by `pyluz.load`)."""
    check_callable(loss, "loss", "an nn.Module or a callable (pred, target) -> tensor", allow_none=True)
    if isinstance(loss, type):
        raise TypeError(f"`loss` is the class {loss.__name__}; pass an instance such as {loss.__name__}().")
    if isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            "`optimizer` must be a factory such as torch.optim.Adam, not an optimizer instance; set its "
            "arguments with set_opt_hparams()."
        )
    check_callable(
        optimizer, "optimizer", "a factory f(params, **opt_hparams) such as torch.optim.Adam", allow_none=True
    )
    check_callable(backward, "backward", "a callable (loss) -> None", allow_none=True)
    as_metric_set(metrics)


def setup(
    module: Any,
    loss: Callable | None = None,
    optimizer: Callable | None = None,
    metrics: Any = None,
    backward: Callable | None = None,
) -> LuzModule:
    """Prepare `module` for training: returns a `LuzModule`.

    `module` is an nn.Module class, a callable returning an nn.Module (built in `fit` with the
    hparams), or an already built nn.Module. `loss` is an nn.Module or any `(pred, target) -> scalar`
    callable; `optimizer` a factory `f(params, **opt_hparams)` such as `torch.optim.Adam`;
    `metrics` a list of pyluz Metrics, torchmetrics metrics (e.g.
    `torchmetrics.classification.MulticlassF1Score(10)`) or functions `fn(preds, target) -> tensor`
    (averaged over samples, recorded under the function's name), or a MetricSet; `backward` replaces
    `loss.backward()`.

    Example:

    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam,
    ...                     metrics=[pyluz.metrics.Accuracy()])
    >>> model.set_hparams(in_features=4, out_features=2)
    <LuzModule Linear hparams={'in_features': 4, 'out_features': 2} opt_hparams={}>

    Several optimizers and a custom step (a small GAN). Without `optimizer=`, the module's
    `set_optimizers(**opt_hparams)` builds them: a dict names each one (`ctx.optimizers[name]`).
    Without `loss=`, a module's `step()` replaces the default step: it reads `ctx.input` /
    `ctx.target` and `ctx.training`, steps the optimizers itself when training, and sets
    `ctx.loss` (a dict per optimizer is recorded as `loss_<name>`):

    >>> class GAN(nn.Module):
    ...     def __init__(self, noise=4):
    ...         super().__init__()
    ...         self.noise = noise
    ...         self.gen = nn.Sequential(nn.Linear(noise, 16), nn.ReLU(), nn.Linear(16, 1))
    ...         self.disc = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))
    ...     def forward(self, n):                      # n samples from the generator
    ...         return self.gen(torch.randn(n, self.noise))
    ...     def set_optimizers(self, lr=1e-3):
    ...         return {"disc": torch.optim.Adam(self.disc.parameters(), lr=lr),
    ...                 "gen": torch.optim.Adam(self.gen.parameters(), lr=lr)}
    ...     def step(self):
    ...         ctx, bce = self.ctx, nn.functional.binary_cross_entropy_with_logits
    ...         real = ctx.input
    ...         fake = self(len(real))
    ...         ones, zeros = torch.ones(len(real), 1), torch.zeros(len(real), 1)
    ...         loss_disc = bce(self.disc(real), ones) + bce(self.disc(fake.detach()), zeros)
    ...         if ctx.training:
    ...             ctx.optimizers["disc"].zero_grad()
    ...             loss_disc.backward()
    ...             ctx.optimizers["disc"].step()
    ...         loss_gen = bce(self.disc(fake), ones)  # the generator wins when its fakes pass as real
    ...         if ctx.training:
    ...             ctx.optimizers["gen"].zero_grad()
    ...             loss_gen.backward()
    ...             ctx.optimizers["gen"].step()
    ...         ctx.loss = {"disc": loss_disc.detach(), "gen": loss_gen.detach()}
    >>> _ = torch.manual_seed(0)
    >>> real = 3 + 0.5 * torch.randn(512, 1)                # the data: numbers around 3
    >>> gan = pyluz.setup(GAN).set_opt_hparams(lr=2e-3).fit(real, epochs=20, verbose=False)
    >>> gan.history.columns.tolist()
    ['epoch', 'train_loss_disc', 'train_loss_gen']
    >>> with torch.no_grad():
    ...     abs(gan.model(1000).mean().item() - 3) < 0.5
    True
    """
    if isinstance(module, type) and not issubclass(module, nn.Module):
        raise TypeError(message("module", MODULE_EXPECTED, f"class {module.__name__}"))
    if not (isinstance(module, nn.Module) or callable(module)):
        raise TypeError(message("module", MODULE_EXPECTED, type(module).__name__))
    check_training_args(loss, optimizer, metrics, backward)
    if isinstance(module, nn.Module) or inspect.isclass(module):
        check_module_methods(module, loss, optimizer)
    return LuzModule(module, loss=loss, optimizer=optimizer, metrics=metrics, backward=backward)


def set_hparams(module: LuzModule, **hparams: Any) -> LuzModule:
    """`module.set_hparams(**hparams)` as a function (for pipes)."""
    return _check_luz_module(module, "set_hparams").set_hparams(**hparams)


def set_opt_hparams(module: LuzModule, **opt_hparams: Any) -> LuzModule:
    """`module.set_opt_hparams(**opt_hparams)` as a function (for pipes)."""
    return _check_luz_module(module, "set_opt_hparams").set_opt_hparams(**opt_hparams)


def fit(
    module: LuzModule,
    data: Any,
    epochs: int | tuple[int, int] = 10,
    callbacks: list | None = None,
    valid_data: Any = None,
    accelerator: Accelerator | None = None,
    verbose: bool | None = None,
    dataloader_options: dict | None = None,
) -> Fitted:
    """Train a LuzModule; returns a `Fitted`.

    `data`/`valid_data`: DataLoader, Dataset, IterableDataset, tensor/array, tuple/list/dict of
    them, or a pandas DataFrame; `valid_data` may also be a fraction in [0, 1) of `data`.
    `epochs`: an int or `(min_epochs, max_epochs)`. `dataloader_options`: DataLoader arguments for
    inputs that are not DataLoaders (default batch_size=32; training shuffles and drops the last
    incomplete batch). `verbose=None` shows progress when stderr is a terminal or a notebook.

    Example:

    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> model = pyluz.setup(nn.Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_hparams(in_features=4, out_features=2)
    >>> fitted = pyluz.fit(model, (x, y), epochs=(2, 10), valid_data=0.2, verbose=False,
    ...                    callbacks=[pyluz.callbacks.EarlyStopping(patience=2)])
    >>> 2 <= len(fitted.get_metrics().epoch.unique()) <= 10
    True
    """
    return _check_luz_module(module, "fit").fit(
        data,
        epochs=epochs,
        callbacks=callbacks,
        valid_data=valid_data,
        accelerator=accelerator,
        verbose=verbose,
        dataloader_options=dataloader_options,
    )


def _check_luz_module(module, fn):
    if not isinstance(module, LuzModule):
        raise TypeError(f"`{fn}()` expects the result of setup(), got {type(module).__name__}.")
    return module
