"""The version of pyluz (the one place it is written in the engine)."""

__version__ = "0.1.0"
