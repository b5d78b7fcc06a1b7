"""Adapters that only the R front end needs.

* ``guard``  -- the main-thread check every Python->R call goes through.

The R-torch compatibility layer: ``torch_<x>.py`` serves ``rpkg/R/torch-<x>.R``.

* ``torch_indices``  -- the one "indices start at 1" rule (dims, positions, results).
* ``torch_tensor``   -- R values <-> tensors, creation (``torch_arange`` inclusive, ...).
* ``torch_ops``      -- ops and ``$`` methods with 1-based dims, R operators.
* ``torch_indexing`` -- ``[`` / ``[<-`` with R semantics.
* ``torch_nn_args``, ``torch_nn``, ``torch_nnf`` -- layers, losses and functional
  ops (1-based class targets, R argument types).
* ``torch_optim``    -- optimizer and LR-scheduler factories.
* ``torch_class``    -- ``RModule`` / ``RDataset`` / ``RIterableDataset``: Python
  classes whose methods are R closures (``nn_module()`` / ``dataset()``).
* ``torch_data``     -- R items and batches, ``tensor_dataset``, ``dataloader``.

The luz part of the R package adds its own adapters here (R callbacks,
metrics, progress renderer, error tags).

Nothing here imports R; R objects only arrive as callables through reticulate.
"""

from .guard import ensure_main_thread, guard, is_r_callable

__all__ = ["ensure_main_thread", "guard", "is_r_callable"]
