"""Built-in callbacks. Each luz callback has a Python class of its own."""

from .base import Callback
from .defaults import (
    Interrupt,
    MetricsCallback,
    Profile,
    TrainValid,
    default_evaluate_callbacks,
    default_fit_callbacks,
    default_predict_callbacks,
)
from .example_input import KeepExampleInput
from .progress import Progress
from .gradients import GradientAccumulation, GradientClip, TerminateOnNaN
from .loggers import CSVLogger, TensorBoard
from .lr_scheduler import LRScheduler
from .mixed_precision import MixedPrecision
from .mixup import MixUp, MixupLoss, mixup
from .checkpoint import KeepBestModel, ModelCheckpoint
from .early_stopping import EarlyStopping
from .resume import AutoResume, ResumeFromCheckpoint
from .trace_forward import TraceForward

__all__ = [
    "Callback",
    "Interrupt",
    "KeepExampleInput",
    "MetricsCallback",
    "Profile",
    "Progress",
    "TrainValid",
    "default_evaluate_callbacks",
    "default_fit_callbacks",
    "default_predict_callbacks",
]
__all__ += [
    "CSVLogger",
    "GradientAccumulation",
    "GradientClip",
    "LRScheduler",
    "MixedPrecision",
    "MixUp",
    "MixupLoss",
    "TensorBoard",
    "TerminateOnNaN",
    "mixup",
]
__all__ += ["AutoResume", "EarlyStopping", "KeepBestModel", "ModelCheckpoint", "ResumeFromCheckpoint", "TraceForward"]
