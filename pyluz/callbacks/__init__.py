"""Built-in callbacks (SPEC §3.5). Each luz callback has a Python class of its own."""

from .base import Callback
from .defaults import Interrupt, MetricsCallback, Profile, TrainValid
from .progress import Progress

__all__ = ["Callback", "Interrupt", "MetricsCallback", "Profile", "Progress", "TrainValid"]
