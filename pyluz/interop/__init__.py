"""Adapters that only the R front end needs.

* ``guard``  -- the main-thread check every Python->R call goes through.
* ``rops``   -- R-torch conventions for tensors (1-based dims and indices,
  R array conversion, ``[`` indexing, dim-translated ops).
* ``rnn``    -- layers, losses, functional ops and optimizer/scheduler
  factories with R-torch conventions (1-based class targets, ...).
* ``rtorch`` -- ``RModule`` / ``RDataset`` / ``RIterableDataset``: Python
  classes whose methods are R closures (``nn_module()`` / ``dataset()``).

The luz part of the R package adds its own adapters here (R callbacks,
metrics, progress renderer, error tags).

Nothing here imports R; R objects only arrive as callables through reticulate.
"""

from .guard import ensure_main_thread, guard, is_r_callable

__all__ = ["ensure_main_thread", "guard", "is_r_callable"]
