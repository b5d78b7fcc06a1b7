"""The two Python functions the R package's C path (``rpkg/src/pyref.c``) calls through reticulate.

That path makes reticulate's R object for a Python value itself, once it knows the value's class
vector. For a value of a type it has not seen, and for an exception, it hands the object back to
reticulate through these, so that reticulate wraps the value (and its class vector is kept), or
raises the error as it raises any Python error.

>>> rewrap(3)
3
"""


def rewrap(value):
    """Return ``value``: reticulate then wraps it as usual."""
    return value


def reraise(error):
    """Raise ``error`` (an exception with its traceback) where reticulate reports it."""
    raise error
