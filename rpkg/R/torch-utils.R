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

# reticulate's call entry point: the one found when the package loaded, else looked up now.
.call_impl <- function() if (is.null(.py_call_impl)) .find_call_impl() else .py_call_impl

# Call a Python callable with R arguments (unnamed -> positional, named ->
# keywords).  Tensors come back unconverted (fast path); anything else goes
# through reticulate's py_to_r.
.pycall <- function(f, ...) {
  args <- list(...)
  nms <- names(args)
  if (is.null(nms)) return(.pycall_list(f, args))
  named <- nzchar(nms)
  .pycall_list(f, args[!named], args[named])
}

# Same with explicit positional/keyword lists. The call goes through the package's C path
# (pyref.R) when it converts every argument, else through reticulate's.
.pycall_list <- function(f, args, kwargs = NULL) {
  r <- .Call(C_py_call, f, args, kwargs, .py_classes)
  if (is.null(r)) {
    r <- .call_impl()(f, args, kwargs)
  } else if (inherits(r, "pyluz_bare")) {
    r <- py_unbare(r)
  }
  if (inherits(r, "torch.Tensor")) return(r)
  r <- reticulate::py_to_r(r)
  if (is.null(r)) invisible(NULL) else r
}


# The Python object behind a reticulate wrapper (or NULL).

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
