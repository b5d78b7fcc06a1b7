"""The version of pyluz: the one place it is written.

setuptools reads it for the wheel's metadata (pyproject.toml, ``dynamic = ["version"]``), the package
exports it as ``pyluz.__version__``, and the R package's DESCRIPTION must carry the same version (a test
checks it; the R package refuses an engine of another version at load).
"""

__version__ = "0.1.0"
