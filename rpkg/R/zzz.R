# Package load hooks and Python module handles.
#
# Python modules are imported lazily (`delay_load = TRUE`), so loading the R
# package never starts Python; the first call that needs torch does.  Point
# reticulate at the environment that has torch and pyluz installed with
# `RETICULATE_PYTHON=/path/to/.venv/bin/python` (or
# `reticulate::use_virtualenv(..., required = TRUE)`) *before* that first call.
#
# Handles (package-level variables, assigned in .onLoad):
#   torch  - Python `torch`
#   rops   - `pyluz.interop.rops`  (R-torch conventions for tensors)
#   rnn    - `pyluz.interop.rnn`   (layers, losses, nnf, optimizers)
#   rtorch - `pyluz.interop.rtorch` (R-backed nn.Module / Dataset classes)
# A later part of the package adds the engine handle (`pyluz`) here.

torch <- NULL
rops <- NULL
rnn <- NULL
rtorch <- NULL

.engine_missing_message <- function(what, e) {
  paste0(
    "pyluz: could not import the Python module '", what, "'.\n",
    "The R package needs a Python environment with torch, numpy<2 and the pyluz ",
    "engine installed (see the pyluz README; e.g. `python3 -m venv .venv && ",
    ".venv/bin/pip install -e . 'numpy<2'` in the repository), then set ",
    "RETICULATE_PYTHON=<repo>/.venv/bin/python before loading pyluz.\n",
    "Original error: ", conditionMessage(e)
  )
}

.lazy_import <- function(module) {
  hooks <- list(on_error = function(e) stop(.engine_missing_message(module, e), call. = FALSE))
  hooks$before_load <- function() {
    preimport_torch()
    if (startsWith(module, "pyluz.")) preimport_pyluz()
  }
  reticulate::import(module, delay_load = hooks)
}

.onLoad <- function(libname, pkgname) {
  torch <<- .lazy_import("torch")
  rops <<- .lazy_import("pyluz.interop.rops")
  rnn <<- .lazy_import("pyluz.interop.rnn")
  rtorch <<- .lazy_import("pyluz.interop.rtorch")
  .py_call_impl <<- .find_call_impl()
  .install_cache_clearer()
  .register_torch_classes()
  invisible()
}

.onUnload <- function(libpath) {
  .remove_cache_clearer()
  invisible()
}

#' Pipe operator
#'
#' See \code{magrittr::\link[magrittr:pipe]{\%>\%}} for details.
#'
#' @name %>%
#' @rdname pipe
#' @keywords internal
#' @export
#' @importFrom magrittr %>%
#' @usage lhs \%>\% rhs
#' @param lhs A value or the magrittr placeholder.
#' @param rhs A function call using the magrittr semantics.
#' @return The result of calling `rhs(lhs)`.
NULL

#' @importFrom reticulate r_to_py py_to_r py_to_r_wrapper
#' @importFrom utils .DollarNames
NULL

# Free variables of user code evaluated by the package (R torch / luz style).
utils::globalVariables(c("self", "private", "super", "ctx", "N", ".."))
