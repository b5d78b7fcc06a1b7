# R torch's class vectors on the Python objects that reach R.
#
# reticulate 1.28 builds the R class of every Python object it hands to R
# (results of calls, `$` lookups, list elements and the arguments of R
# callbacks alike) from the Python MRO, e.g. `torch.Tensor`,
# `torch._C.TensorBase`, `python.builtin.object`, and then runs the class
# filters registered with `reticulate::register_class_filter()`.  One filter
# prepends R torch's names (`torch_tensor`; `nn_linear`, `nn_module`;
# `optim_adam`, `torch_optimizer`; `dataset`; `dataloader`; ...), so
# `inherits(x, "torch_tensor")` and S3 methods written for R torch classes work
# for every tensor, however it reached R.  The Python names stay behind them,
# so the layer's own methods (`$.torch.Tensor`, ...) dispatch as before.
#
# The added names depend only on the MRO, so they are computed once per Python
# class (keyed by the first class name) and looked up afterwards: one
# environment lookup per object.  They go in front, except for modules defined
# in Python outside torch (`mypkg.Net`): there `nn_module` follows the user's
# classes, so `class(m)[1]` stays the class name, as for R-defined modules.

.class_prefixes <- new.env(parent = emptyenv())

# Base classes of the R-backed Python classes (torch_class.py): not R names.
.rclass_bases <- c("RObject", "RModule", "_RData", "RDataset", "RIterableDataset", "ROptimizer",
                   "RLRScheduler")

# The reticulate class filter: `classes` is the class vector built from the MRO.
.torch_class_filter <- function(classes) {
  add <- .class_prefixes[[classes[[1L]]]]
  if (is.null(add)) {
    add <- .r_torch_classes(classes)
    after <- 0L
    if (identical(add, "nn_module") && !startsWith(classes[[1L]], "pyluz.interop.")) {
      after <- match(TRUE, startsWith(classes, "torch.nn.modules.")) - 1L   # mypkg.Net
    }
    add <- list(names = add, after = after)
    assign(classes[[1L]], add, envir = .class_prefixes)
  }
  if (!length(add$names)) return(classes)
  if (add$after == 0L) c(add$names, classes) else append(classes, add$names, after = add$after)
}

.register_torch_classes <- function() {
  filters <- get0(".globals", envir = asNamespace("reticulate"))$class_filters
  for (f in filters) if (identical(body(f), body(.torch_class_filter))) return(invisible())
  reticulate::register_class_filter(.torch_class_filter)
  invisible()
}

# R torch's classes for one Python MRO (character(0) when none apply).
.r_torch_classes <- function(classes) {
  if ("torch_tensor" %in% classes) return(character())   # already filtered
  if ("torch.Tensor" %in% classes) {
    return(if ("torch.nn.parameter.Parameter" %in% classes) c("nn_parameter", "torch_tensor") else "torch_tensor")
  }
  if ("torch.nn.modules.module.Module" %in% classes) {
    return(unique(c(.r_module_names(classes), "nn_module")))
  }
  if ("torch.optim.optimizer.Optimizer" %in% classes) {
    own <- .r_defined_names(classes)
    if (length(own)) return(unique(c(own, "torch_optimizer")))     # optimizer("optim_x")
    own <- .py_class_short(classes[[1L]])
    return(c(paste0("optim_", tolower(own)), "torch_optimizer"))
  }
  if ("torch.optim.lr_scheduler.LRScheduler" %in% classes) {
    return(unique(c(.r_defined_names(classes), "lr_scheduler")))
  }
  if ("torch.utils.data.dataloader.DataLoader" %in% classes) return("dataloader")
  if ("torch.utils.data.dataset.IterableDataset" %in% classes) {
    return(unique(c(.r_defined_names(classes), "iterable_dataset", "dataset")))
  }
  if ("torch.utils.data.dataset.Dataset" %in% classes) {
    return(unique(c(.r_defined_names(classes), "dataset")))
  }
  switch(classes[[1L]], torch.device = "torch_device", torch.dtype = "torch_dtype",
         torch.Size = "torch_size", character())
}

.py_class_short <- function(x) sub("^.*\\.", "", x)

# Class names of R-defined generators in an MRO (nn_module("Net") -> "Net";
# their Python classes live in pyluz.interop.torch_class.g<id>).
.r_defined_names <- function(classes) {
  own <- classes[startsWith(classes, "pyluz.interop.torch_class.")]
  own <- .py_class_short(own)
  own[!own %in% .rclass_bases]
}

# nn_module("Net", inherit = nn_linear) -> c("Net", "nn_linear"); nn.Linear -> "nn_linear".
.r_module_names <- function(classes) {
  out <- character()
  for (cl in classes) {
    if (startsWith(cl, "pyluz.interop.torch_class.")) {
      nm <- .py_class_short(cl)
      if (!nm %in% .rclass_bases) out <- c(out, nm)
    } else if (startsWith(cl, "torch.nn.modules.") && cl != "torch.nn.modules.module.Module" &&
               !startsWith(.py_class_short(cl), "_")) {    # not torch's private bases (_Loss, ...)
      out <- c(out, .nn_name(.py_class_short(cl)))
    } else if (startsWith(cl, "pyluz.interop.torch_nn.R")) {
      out <- c(out, .nn_name(substring(.py_class_short(cl), 2L)))   # RCrossEntropyLoss
    }
  }
  out
}

# PyTorch layer class -> R torch's constructor name: Linear -> nn_linear,
# BatchNorm1d -> nn_batch_norm1d, BCEWithLogitsLoss -> nn_bce_with_logits_loss,
# LeakyReLU -> nn_leaky_relu, LSTM -> nn_lstm.
.nn_name <- function(py_name) {
  x <- py_name
  for (w in c("PReLU", "RReLU", "ReLU", "GELU", "SiLU", "SELU", "CELU", "ELU", "GLU", "LSTM", "GRU", "RNN")) {
    x <- gsub(w, paste0(substr(w, 1, 1), tolower(substring(w, 2))), x, fixed = TRUE)
  }
  x <- gsub("([A-Z]+)([A-Z][a-z])", "\\1_\\2", x)
  x <- gsub("([a-z0-9])([A-Z])", "\\1_\\2", x)
  paste0("nn_", tolower(x))
}
