# Reading Python values into R cheaply: the per-batch reads of `ctx` (context.R) and the R-torch
# layer's calls (`.pycall()`, torch-utils.R).
#
# reticulate 1.28 wraps each Python object that reaches R in a new environment with a class vector
# it rebuilds from the object's MRO and passes through the class filters (two R evaluations): about
# 75k instructions per object, whatever the object. src/pyref.c makes the same R object directly:
# an environment holding `pyobj` (an external pointer owning one reference, released by its
# finalizer) and `convert`, with the class vector reticulate built for the first object of that
# Python type. The vectors are kept per type in `.py_classes`; a type not seen yet, a Python error
# or Python not loaded makes the C entry points return NULL, and the caller takes reticulate's
# path (`.rt` below), which raises the error as reticulate does, or yields the vector to remember:
#
#   value <- .Call(C_py_attr, x, name, .py_classes)
#   if (is.null(value)) value <- py_remembered(.rt$attr(x, name, FALSE))
#
# The entry points are `C_py_len(x)`, `C_py_attr(x, name, classes)`, `C_py_item(x, key, classes)`
# (a string key), `C_py_call(f, args, kwargs, classes)` (NULL, before calling, unless every argument
# is NULL, a Python object or a plain length-one double / integer / logical / string, as reticulate
# would convert them; a "pyluz_bare" object, for `py_unbare()`, when the result's type is new or
# the call raised), `C_py_tensor_items(x, keys, classes)` (a named list of `x[key]`, NULL unless all are
# tensors of known types) and `C_py_remember_class(value, classes)`; written out at each hot call site,
# since an R function call around them costs as much as the crossing.

#' @useDynLib pyluz, .registration = TRUE
NULL

.py_classes <- new.env(parent = emptyenv())

# A "pyluz_bare" object from `C_py_call`, handed to reticulate: a raised exception is raised again
# there (the R error is reticulate's, as for any Python error); a value of a new type is wrapped by
# reticulate, and its class vector kept.
py_unbare <- function(x) {
  if (is.null(.rt$rewrap)) rt_bind()
  call <- .call_impl()
  if (isTRUE(attr(x, "pyluz_error", exact = TRUE))) call(.rt$reraise, list(x), NULL)
  value <- py_remembered(call(.rt$rewrap, list(x), NULL))
  assign("convert", get("convert", envir = x), envir = value)   # the called function's, not rewrap's
  value
}

# `value`, after noting its class vector for the C path's later wraps of its type.
py_remembered <- function(value) {
  .Call(C_py_remember_class, value, .py_classes)
  value
}

# reticulate's C entry points behind `py_len()`, `py_get_attr()` and `py_get_item()`. The exported
# functions first check, with two more crossings, that Python is running and that the object is not
# a stale reference from an earlier session; a probe reached through a live ctx never is, and those
# checks were 15 µs of a 20 µs read. Looked up once; the exported functions stand in where a
# reticulate version lacks them.
.rt <- new.env(parent = emptyenv())

rt_bind <- function() {
  ns <- asNamespace("reticulate")
  pick <- function(internal, fallback) {
    f <- get0(internal, envir = ns, mode = "function", inherits = FALSE)
    if (is.null(f)) fallback else f
  }
  .rt$len <- pick("py_len_impl", function(x, default = NULL) reticulate::py_len(x))
  .rt$attr <- pick("py_get_attr_impl", function(x, name, silent) reticulate::py_get_attr(x, name, silent))
  .rt$item <- pick("py_get_item_impl", function(x, key, silent) reticulate::py_get_item(x, key, silent))
  helpers <- engine_module("interop.pyref")
  .rt$rewrap <- reticulate::py_get_attr(helpers, "rewrap")
  .rt$reraise <- reticulate::py_get_attr(helpers, "reraise")
  invisible()
}
