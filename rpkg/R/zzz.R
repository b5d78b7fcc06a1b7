# Package load hooks.
#
# Loading the package never starts Python (py_module() in engine.R imports on first use). `.onLoad`
# only tells reticulate which Python to look for when something starts it: one that has the module
# `pyluz`, preferring the virtual environment "r-pyluz" that install_pyluz() creates (reticulate's
# convention for packages that wrap Python, as tensorflow and keras do; RETICULATE_PYTHON and
# `reticulate::use_virtualenv(..., required = TRUE)` still come first).

# The environment install_pyluz() creates by default, and which reticulate looks for.
default_envname <- "r-pyluz"

.onLoad <- function(libname, pkgname) {
  if (!reticulate::py_available(initialize = FALSE)) {
    # Registers the preference only; the returned proxy is not used (py_module() imports).
    reticulate::import("pyluz", delay_load = list(priority = 5, environment = default_envname))
  }
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
