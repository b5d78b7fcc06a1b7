# The bridge between R and the engine:
# * R functions handed to Python (callbacks, metrics, losses, factories) are wrapped so that an R
#   error inside them is stored in a registry and reaches Python as "[[rcond:<id>]] <message>"
#   (reticulate 1.28 would keep only the message), and so that they run on the main thread only;
# * R entry points call the engine through `engine_call()`, which re-signals the stored R
#   condition (original class, message and call) with the engine's context attached, or turns a
#   Python error into an R error of class `pyluz_error`;
# * R values are converted the way the engine expects (data, hyperparameters, options).

# `f` wrapped for Python: errors are tagged; `returns = FALSE` makes it return NULL (so that no R
# object that Python can't represent, such as an R6 object, has to be converted).
r_callable <- function(f, returns = TRUE) {
  force(f)
  if (returns) {
    function(...) withCallingHandlers(f(...), error = r_error_tag, interrupt = r_interrupt_tag)
  } else {
    function(...) {
      withCallingHandlers(f(...), error = r_error_tag, interrupt = r_interrupt_tag)
      NULL
    }
  }
}

# An R interrupt (`rlang::interrupt()`, or a Ctrl-C R sees) inside R code the engine called: an R
# error with the engine's interrupt tag, which the engine turns into a KeyboardInterrupt
# (pyluz/interop/interrupts.py), so `fit()` ends after `on_interrupt` and returns the model.
r_interrupt_tag <- function(cnd) stop("[[rinterrupt]] interrupted", call. = FALSE)

# A Python callable running the R function `f`: tagged errors and the main-thread guard. With an
# `owner` (see `new_owner()`), Python holds `f` only weakly.
py_function <- function(f, what = "an R function", returns = TRUE, owner = NULL) {
  if (!is.null(owner)) f <- owned_function(f, owner, what)
  engine_module("interop.guard")$guard(r_callable(f, returns), what)
}

# ---- R functions the engine keeps ------------------------------------------------------------
# The engine keeps some R functions beyond one call: the loss, backward, optimizer, module and
# metrics given to setup() live in its LuzModule, and in the Fitted made from it. Python holds an
# R function through reticulate, which preserves it from R's collector; the function's
# environment (often the calling function's frame) can hold the R objects wrapping that LuzModule
# or Fitted. That is a reference cycle across the two languages that neither collector can see:
# every model fitted in a function whose loss was defined there stayed alive for the session.
# So Python holds such a function only through an R weak reference whose key is an `owner`
# environment, and the R objects that reach the engine object (the setup() result, those of
# set_hparams()/set_opt_hparams(), the fitted model) hold the owner. R keeps the function alive
# while the owner is reachable (and the function reaching the owner back does not count), so
# when the R side drops them all, the function, its frame and the engine objects are freed.

# A new owner: an environment the R objects reaching one engine object hold.
new_owner <- function() new.env(parent = emptyenv())

# `f` for Python: the same function, held through a weak reference keyed by `owner`. The closure
# is made by `weakly_held()`, whose frame holds only the reference and the texts, neither `f` nor
# `owner` itself. `freed`: what a call says once `f` was freed (default: setup()'s wording).
owned_function <- function(f, owner, what, freed = NULL) {
  weakly_held(rlang::new_weakref(owner, value = f), what, freed)
}

weakly_held <- function(ref, what, freed = NULL) {
  force(ref)
  force(what)
  force(freed)
  function(...) {
    f <- rlang::wref_value(ref)
    if (is.null(f)) {
      stop(freed %||% sprintf(paste("The R function given as %s was freed with the R objects holding it",
                                    "(the setup() result and the fitted models made from it): keep one of",
                                    "them while the engine object is used."), what), call. = FALSE)
    }
    f(...)
  }
}

# Call engine function `fn`; errors come back as R conditions (see the file header).
# Depth of engine calls made from R: when the outermost one returns, no R method of an R-defined
# object is running, so the strong references R methods cached to their Python objects
# (torch-class.R, `st$strong`) can go. Otherwise they live until the top-level R call ends, and a
# loop of fits inside one function keeps every model alive.
.engine_calls <- new.env(parent = emptyenv())
.engine_calls$depth <- 0L

engine_call <- function(fn, ..., call = rlang::caller_env()) {
  args <- list(...)  # R errors while converting arguments are not engine errors
  .engine_calls$depth <- .engine_calls$depth + 1L
  on.exit({
    .engine_calls$depth <- .engine_calls$depth - 1L
    if (.engine_calls$depth == 0L) .clear_strong_refs()
  }, add = TRUE)
  errors <- engine_module("interop.errors")
  errors$clear()  # an argument reticulate can't convert fails before errors.call() runs
  on.exit(resignal_engine_warnings(errors$take_warnings(), call), add = TRUE)
  tryCatch(
    do.call(errors$call, c(list(fn), args)),
    error = function(e) {
      info <- errors$take_error()
      # reticulate keeps the last Python exception for py_last_error(); its traceback reaches the
      # frames of the failed call, and so its model, until the next error. The R condition made
      # from `info` says all of it.
      if (!is.null(info)) reticulate::py_clear_last_error()
      rethrow_engine_error(e, info, call)
    }
  )
}

resignal_engine_warnings <- function(warnings, call) {
  for (w in warnings) {
    cond <- structure(
      class = c(paste0("pyluz_", w$type), "pyluz_warning", "warning", "condition"),
      list(message = w$message, call = if (is.environment(call)) rlang::frame_call(call) else call)
    )
    warning(cond)
  }
}

engine_context_text <- function(info) {
  if (is.null(info)) return(NULL)
  lines <- character()
  if (!is.null(info$kind)) {
    lines <- sprintf("In %s `%s` at %s (epoch %s, iter %s).", info$kind, info$name, info$where,
                     format(info$epoch), format(info$iter))
  }
  notes <- unlist(info$notes)
  if (length(notes)) lines <- c(lines, sub("^pyluz: ", "", notes))
  if (!length(lines)) return(NULL)
  paste(lines, collapse = "\n")
}

rethrow_engine_error <- function(e, info, call) {
  if (is.null(info)) {
    # Nothing recorded by the engine: reticulate failed to pass an argument (an Rcpp::exception) or
    # Python failed outside errors.call(). Still a pyluz_error, so callers catch one class.
    if (inherits(e, "pyluz_error")) stop(e)
    stop(structure(
      class = c("pyluz_conversion_error", "pyluz_error", "error", "condition"),
      list(message = paste0("Could not pass the arguments to the pyluz engine: ", conditionMessage(e)),
           call = if (is.environment(call)) rlang::frame_call(call) else call, parent = e)
    ))
  }
  context <- engine_context_text(info)
  if (!is.null(info$tag)) {
    orig <- take_condition(info$tag)
    if (!is.null(orig)) {
      orig$py_message <- NULL
      orig$pyluz_context <- info[c("kind", "name", "where", "epoch", "iter")]
      if (identical(info$kind, "callback") || identical(info$kind, "metric")) {
        stop(with_progress(luz_wrapped_error(orig, info, call), info))
      }
      if (!is.null(context)) orig$message <- paste0(orig$message, "\n", context)
      stop(with_progress(orig, info))
    }
  }
  message <- info$message
  if (is.null(info$kind) && !is.null(context)) message <- paste0(message, "\n", context)
  cond <- structure(
    class = c(paste0("pyluz_", info$type), luz_condition_class(info$type), "pyluz_error", "error",
              "condition"),
    list(message = message, call = if (is.environment(call)) rlang::frame_call(call) else call,
         py_type = info$type, reason = info$reason,
         pyluz_context = info[c("kind", "name", "where", "epoch", "iter")])
  )
  stop(with_progress(cond, info))
}

# A failed fit keeps its work: the condition carries the records of the finished epochs
# (`e$records`, as in a fitted object) and the model trained so far (`e$model`).
with_progress <- function(cnd, info) {
  if (!is.null(info$records)) {
    cnd$records <- info$records
    cnd$model <- info$model
  }
  cnd
}

# luz signals its argument errors with class `value_error` (its tests catch that class); the
# engine's ValueError/TypeError mean the same thing.
luz_condition_class <- function(py_type) {
  switch(py_type %||% "", ValueError = "value_error", TypeError = "type_error", NULL)
}

# An R error in a callback or a metric, wrapped the way luz wraps it: "Error while calling
# callback with class <...> at <breakpoint>." caused by (for metrics) "Error when evaluating
# update/compute for metric ...", caused by the original condition. The wrapper also carries the
# original's classes and `pyluz_context`, so handlers for those classes still catch it.
luz_wrapped_error <- function(orig, info, call) {
  phase <- if (isTRUE(info$training)) "train" else "valid"
  cause <- orig
  if (identical(info$kind, "metric")) {
    breakpoint <- sprintf(if (identical(info$where, "update")) "on_%s_batch_end" else "on_%s_end", phase)
    classes <- c("metrics_callback", "LuzCallback", "R6")
    metric_class <- orig$luz_class %||% c(info$name, "LuzMetric", "R6")
    cause <- rlang::catch_cnd(rlang::abort(
      c(sprintf("Error when evaluating %s for metric with abbrev \"%s\" and class <%s>", info$where,
                info$name, paste(metric_class, collapse = "/")),
        i = sprintf("The error happened at iter %s of epoch %s.", format(info$iter), format(info$epoch)),
        i = sprintf("The model was %sin training mode.", if (isTRUE(info$training)) "" else "not ")),
      call = if (identical(info$where, "update")) quote(FUN()) else quote(self$call_compute_on_metric()),
      parent = orig
    ))
    where <- NULL
  } else {
    breakpoint <- info$where
    classes <- .callback_classes[[info$name]] %||% info$name
    # luz says where only for metrics; pyluz says it for callbacks too
    where <- c(i = sprintf("The error happened at iter %s of epoch %s.", format(info$iter), format(info$epoch)))
  }
  own <- setdiff(class(orig), c("rlang_error", "simpleError", "error", "condition"))
  rlang::catch_cnd(rlang::abort(
    c(sprintf("Error while calling callback with class <%s> at %s.", paste(classes, collapse = "/"), breakpoint),
      where),
    class = c(own, "luz_callback_error"), parent = cause, pyluz_context = orig$pyluz_context,
    call = if (is.environment(call)) rlang::frame_call(call) else call
  ))
}

# The R class vectors of the R callbacks in use, by the name the engine knows them by.
.callback_classes <- new.env(parent = emptyenv())

# ---- values ---------------------------------------------------------------------------------

is_py <- function(x) inherits(x, "python.builtin.object")

is_whole <- function(x) {
  is.double(x) && is.null(dim(x)) && length(x) > 0 && all(is.finite(x)) &&
    all(x == round(x)) && all(abs(x) <= .Machine$integer.max)
}

# Hyperparameters for modules: whole doubles become integers (so `num_class = 10` is a Python int,
# as a Python-defined module expects); anything else is passed as is.
# Whole numbers beyond R's integer range (e.g. 3e9) become Python ints too (exact up to 2^53).
as_py_hparams <- function(args) {
  lapply(args, function(x) {
    if (is_whole(x)) return(as.integer(x))
    if (is.double(x) && length(x) == 1 && is.null(dim(x)) && is.finite(x) && x == round(x) && abs(x) <= 2^53) {
      return(reticulate::import_builtins(convert = FALSE)$int(x))
    }
    x
  })
}

int_options <- c("batch_size", "num_workers", "prefetch_factor")

as_py_dataloader_options <- function(options, argument = "dataloader_options") {
  if (is.null(options)) return(NULL)
  if (!is.list(options) || (length(options) && is.null(names(options))) || any(!nzchar(names(options)))) {
    rlang::abort(sprintf("`%s` must be a named list of dataloader arguments, e.g. list(batch_size = 32).",
                         argument), class = "value_error")
  }
  for (nm in names(options)) {
    x <- options[[nm]]
    if (nm %in% int_options && is_whole(x)) options[[nm]] <- as.integer(x)
    else if (is.function(x)) options[[nm]] <- py_function(x, nm)
  }
  options
}

# Data for fit/predict/evaluate: Python objects (dataloaders, datasets, tensors) pass; R arrays
# go to the engine's in-memory fast path (double -> float32, integer -> int64); a list is a
# batch layout (x, y, ...) by position, as in luz.
as_engine_data <- function(x, argument = "data") {
  if (is.null(x) || is_py(x)) return(x)
  if (is.data.frame(x)) {
    rlang::abort(c(sprintf("Unsupported object with class '%s' for `%s`.", class(x)[1], argument),
                   i = "Pass a list of matrices instead, e.g. list(as.matrix(df[features]), df$y)."),
                 class = "value_error")
  }
  if (is.list(x)) {
    out <- lapply(seq_along(x), function(i) as_engine_array(x[[i]], sprintf("%s[[%d]]", argument, i)))
    return(out)
  }
  as_engine_array(x, argument)
}

as_engine_array <- function(x, argument) {
  if (is_py(x)) return(x)
  if ((is.numeric(x) || is.logical(x)) && !is.object(x)) {
    if (is.null(dim(x))) x <- array(x)
    return(x)
  }
  rlang::abort(sprintf("Unsupported object with class '%s' for `%s`: expected a dataloader, a dataset, a tensor, an array/matrix or a list of them.",
                       paste(class(x), collapse = "/"), argument), class = "value_error")
}

# A value computed in R that the engine records: tensors with one element become numbers.
as_plain_value <- function(x) {
  if (is_py(x) && reticulate::py_has_attr(x, "item") && reticulate::py_has_attr(x, "numel")) {
    n <- reticulate::py_call(reticulate::py_get_attr(x, "numel"))
    if (identical(as.numeric(n), 1)) return(reticulate::py_call(reticulate::py_get_attr(x, "item")))
  }
  if (is.list(x)) return(lapply(x, as_plain_value))
  x
}

`%||%` <- function(x, y) if (is.null(x)) y else x

# isinstance() (reticulate 1.28 has no py_isinstance()).
py_is_instance <- function(x, cls) {
  is_py(x) && isTRUE(reticulate::import_builtins()$isinstance(x, cls))
}
