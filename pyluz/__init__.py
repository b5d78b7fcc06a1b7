"""pyluz: luz's high-level training loop for PyTorch.

Example:

>>> import pyluz, torch
>>> from torch import nn
>>> fitted = (pyluz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
...           .set_hparams(in_features=3, out_features=1).set_opt_hparams(lr=0.1)
...           .fit((torch.randn(64, 3), torch.randn(64, 1)), epochs=2, verbose=False))
>>> list(fitted.get_metrics().columns)
['set', 'metric', 'epoch', 'value']
"""

from . import callbacks, metrics
from .accelerator import Accelerator
from .callbacks.base import Callback
from .context import Context
from .control import CallbackError, InputMismatchError, PeerFailure, SkipEpoch, StopTraining
from .lr_finder import LRFinderResult, lr_finder
from .metrics import Metric, MetricSet
from .module import LuzModule, fit, set_hparams, set_opt_hparams, setup
from .results import Evaluation, Fitted
from .checkpoints import load_checkpoint
from .serialization import UnsafeFileError, load, load_model_weights, save_model_weights

from ._version import __version__

__all__ = [
    "Accelerator",
    "Callback",
    "CallbackError",
    "Context",
    "Evaluation",
    "Fitted",
    "InputMismatchError",
    "PeerFailure",
    "LRFinderResult",
    "LuzModule",
    "Metric",
    "MetricSet",
    "SkipEpoch",
    "StopTraining",
    "UnsafeFileError",
    "callbacks",
    "fit",
    "load",
    "load_checkpoint",
    "load_model_weights",
    "lr_finder",
    "metrics",
    "save_model_weights",
    "set_hparams",
    "set_opt_hparams",
    "setup",
    "__version__",
]
