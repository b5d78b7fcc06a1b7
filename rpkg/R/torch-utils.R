# Internal helpers shared by the R-torch compatibility layer (torch-*.R).

# ---------------------------------------------------------------------------
# Fast calls into Python
# ---------------------------------------------------------------------------

.py_call_impl <- NULL
.pycache <- new.env(parent = emptyenv())

# A Python callable of the R-torch layer, cached: .py("ops", "op") is
# `pyluz.interop.torch_ops.op`.  Each torch-<x>.R file is served by
# `pyluz.interop.torch_<x>`; "torch" and "builtins" are torch and Python's builtins.
.py <- function(module, name) {
  key <- paste0(module, ".", name)
  f <- .pycache[[key]]
  if (is.null(f)) {
    mod <- switch(module, torch = py_module("torch"), builtins = reticulate::import_builtins(),
                  py_module(paste0("pyluz.interop.torch_", module)))
    if (module != "warnings" && !isTRUE(.pycache$warnings_installed)) .install_r_warnings()
    f <- reticulate::py_get_attr(mod, name)
    assign(key, f, envir = .pycache)
  }
  f
}

# Python warnings -> R warnings (class `python_warning`), once per session.
.install_r_warnings <- function() {
  assign("warnings_installed", TRUE, envir = .pycache)
  .pycall(.py("warnings", "install"), function(msg) {
    warning(structure(class = c("python_warning", "warning", "condition"),
                      list(message = msg, call = NULL)))
    NULL
  })
}

# reticulate's internal call entry point (skips py_call's argument
# resolution); falls back to the exported py_call if it ever disappears.
.find_call_impl <- function() {
  f <- get0("py_call_impl", envir = asNamespace("reticulate"), inherits = FALSE)
  if (is.null(f)) {
    f <- function(x, args, keywords) do.call(reticulate::py_call, c(list(x), args, keywords))
  }
  f
}

.call_impl <- function() .find_call_impl()

# Call a Python callable with R arguments (unnamed -> positional, named ->
# keywords).  Tensors come back unconverted (fast path); anything else goes
# through reticulate's py_to_r.
.pycall <- function(f, ...) {
  args <- list(...)
  nms <- names(args)
  impl <- .py_call_impl
  if (is.null(impl)) impl <- .call_impl()
  r <- if (is.null(nms)) {
    impl(f, args, NULL)
  } else {
    named <- nzchar(nms)
    impl(f, args[!named], args[named])
  }
  if (inherits(r, "torch.Tensor")) return(r)
  r <- reticulate::py_to_r(r)
  if (is.null(r)) invisible(NULL) else r
}

# Same with explicit positional/keyword lists.
.pycall_list <- function(f, args, kwargs = NULL) {
  impl <- .py_call_impl
  if (is.null(impl)) impl <- .call_impl()
  r <- impl(f, args, kwargs)
  if (inherits(r, "torch.Tensor")) return(r)
  r <- reticulate::py_to_r(r)
  if (is.null(r)) invisible(NULL) else r
}

`%or%` <- function(x, y) if (is.null(x)) y else x

# The Python object behind a reticulate wrapper (or NULL).
.is_py <- function(x) inherits(x, "python.builtin.object")

# Keep only the arguments that were supplied (drops missing formals).
.supplied <- function(env, names) {
  out <- list()
  for (n in names) {
    if (!eval(call("missing", as.name(n)), env)) {
      v <- get(n, envir = env)
      out[n] <- list(v)
    }
  }
  out
}

# All formals of the calling function with their (possibly default) values;
# arguments without default that were not supplied are left out.
.args_with_defaults <- function(env, fmls) {
  nms <- names(fmls)
  nms <- nms[nms != "..."]
  args <- as.list.environment(env, all.names = TRUE)[nms]
  empty <- vapply(args, .is_missing_value, logical(1))
  if (any(empty)) args <- args[!empty]
  args
}

.is_missing_value <- function(v) identical(v, quote(expr = ))

# ---------------------------------------------------------------------------
# R errors that travel through Python (reticulate 1.28 flattens them into
# `RuntimeError(message)`): tag them with a registry id and re-signal the
# original condition when the error comes back to R.  See the interop notes
# (section 1.3).  The luz part of the package uses the same two functions.
# ---------------------------------------------------------------------------

.r_errors <- new.env(parent = emptyenv())
.r_errors$n <- 0L
.r_errors$conds <- list()

.error_tag_re <- "\\[\\[rcond:([0-9]+)\\]\\]"

# Calling handler for R code run from Python: stores the condition and
# re-raises a tagged message.  Errors that already carry a tag are left alone.
r_error_tag <- function(e) {
  msg <- conditionMessage(e)
  if (grepl(.error_tag_re, msg)) {
    # already tagged further down (R -> Python -> R -> Python): keep the tag
    return(invisible())
  }
  .r_errors$n <- .r_errors$n + 1L
  id <- as.character(.r_errors$n)
  if (length(.r_errors$conds) >= 100L) .r_errors$conds <- utils::tail(.r_errors$conds, 50L)
  e$r_calls <- sys.calls()
  .r_errors$conds[[id]] <- e
  stop(sprintf("[[rcond:%s]] %s", id, msg), call. = FALSE)
}

# Look up the original R condition of a tagged Python error (removes it).
r_error_lookup <- function(e) {
  msg <- conditionMessage(e)
  m <- regmatches(msg, regexpr(.error_tag_re, msg))
  if (!length(m)) return(NULL)
  id <- sub(.error_tag_re, "\\1", m)
  orig <- .r_errors$conds[[id]]
  if (is.null(orig)) return(NULL)
  .r_errors$conds[[id]] <- NULL
  orig$py_message <- sub("^[A-Za-z_.]*Error: ", "", trimws(msg))
  orig
}

# Evaluate `expr` (which calls into Python); an R error raised inside Python
# is re-signalled as the original R condition.
with_r_errors <- function(expr) {
  withCallingHandlers(expr, error = function(e) {
    orig <- r_error_lookup(e)
    if (!is.null(orig)) stop(orig)
  })
}

# Wrap an R function so it can be handed to Python: errors are tagged.
.py_facing <- function(f) {
  force(f)
  r_callable(f)  # one wrapper for every R function Python calls (bridge.R): errors and interrupts
}
