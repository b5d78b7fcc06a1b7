# Tracing an nn_module()'s forward (`capture = TRUE` in setup()/fit()).
#
# The engine (`pyluz.interop.capture.TracedForward`) records the aten ops of the forward once per
# (mode, input signature) and replays them without R. What a recording can't hold is found two
# ways: the engine's probe makes a host read while tracing (`$item()`, `as_array()`, `if` on a
# tensor) an error, and the static check below reads the R code of the forward (and of the
# `self$method()`s it calls) for what must run in R at every call.

# R functions that draw from R's random numbers.
.capture_rng <- c("runif", "rnorm", "rbinom", "rpois", "rexp", "rgamma", "rbeta", "rt", "rchisq",
                  "rcauchy", "rlogis", "rweibull", "rgeom", "rhyper", "rnbinom", "rmultinom", "rlnorm",
                  "sample", "sample.int", "set.seed", "RNGkind")
.capture_print <- c("print", "cat", "message", "warning", "writeLines", "str", "show", "browser",
                    "format_message", "cli_text", "cat_line")

# The reason a forward can't be traced (a string), or NULL. `methods`: the module's public methods,
# so `self$helper()` calls are read too.
capture_hazard <- function(f, methods = list(), seen = "forward") {
  found <- NULL
  called <- character()
  walk <- function(e) {
    if (!is.null(found)) return()
    if (is.symbol(e)) {
      nm <- as.character(e)
      if (identical(nm, "ctx")) found <<- "uses `ctx`"
      else if (identical(nm, "private")) found <<- "uses `private`"
      return()
    }
    if (!is.call(e)) return()
    head <- e[[1]]
    if (is.symbol(head)) {
      h <- as.character(head)
      if (h == "<<-") return(found <<- "assigns with `<<-`")
      if (h %in% .capture_rng) return(found <<- sprintf("uses R's random numbers (`%s()`)", h))
      if (h %in% .capture_print) return(found <<- sprintf("prints (`%s()`)", h))
      if (h %in% c("<-", "=", "assign") && length(e) >= 2 && .capture_self_target(e[[2]])) {
        return(found <<- sprintf("assigns a module field (`%s <-`)", paste(deparse(e[[2]]), collapse = "")))
      }
    } else if (is.call(head) && identical(head[[1]], as.symbol("$")) && identical(head[[2]], as.symbol("self"))) {
      called <<- c(called, as.character(head[[3]]))  # self$method(...)
    }
    for (i in seq_along(e)) if (!identical(e[[i]], quote(expr = ))) walk(e[[i]])
  }
  walk(body(f))
  for (nm in setdiff(called, seen)) {
    if (!is.null(found)) break
    g <- methods[[nm]]
    if (is.function(g)) {
      seen <- c(seen, nm)
      found <- capture_hazard(g, methods, seen)
    }
  }
  found
}

# `self$x`, `self[["x"]]`, `self$x$y`, `names(self$x)`: a target rooted at `self`.
.capture_self_target <- function(target) {
  while (is.call(target)) {
    h <- target[[1]]
    if ((identical(h, as.symbol("$")) || identical(h, as.symbol("[[")) || identical(h, as.symbol("@"))) &&
        identical(target[[2]], as.symbol("self"))) {
      return(TRUE)
    }
    if (length(target) < 2) return(FALSE)
    target <- target[[2]]
  }
  FALSE
}

# Called by the engine for each R-defined submodule when tracing starts: marks the module so
# that a later `self$x <- value` drops the programs, and returns why its forward can't be traced.
capture_inspect <- function(x) {
  st <- .rstate(x)
  if (is.null(st)) return(NULL)
  st$watched <- TRUE
  f <- get0("forward", envir = st$pub, inherits = FALSE)
  if (!is.function(f)) return(NULL)
  methods <- mget(ls(st$pub), envir = st$pub)
  capture_hazard(f, methods[vapply(methods, is.function, logical(1))])
}

.capture_field_assigned <- function(x) {
  .pycall(reticulate::py_get_attr(py_module("pyluz.interop.capture"), "field_assigned"), x)
  invisible()
}

# The TraceForward callback of a fit, or NULL without capture.
capture_callback <- function(capture) {
  if (!isTRUE(capture)) return(NULL)
  engine_module("callbacks")$TraceForward(inspect = r_callable(capture_inspect))
}

# What tracing did (the engine's TraceForward.frame(): fit, predicts and evaluates so far), one row
# per key: `key`, `status` ("traced", "eager", "dropped"), `traced` (a program is in use), `reason`,
# and the counts `traces`, `drops`, `replays`, `eager_calls`. NULL without tracing.
capture_frame <- function(trace) {
  if (is.null(trace)) return(NULL)
  cols <- as_r(trace$frame())
  text <- function(v) vapply(v, function(x) if (is.null(x)) NA_character_ else as.character(x), character(1))
  count <- function(v) vapply(v, as.integer, integer(1))
  status <- text(cols$status)
  data.frame(key = text(cols$key), status = status, traced = status == "traced", reason = text(cols$reason),
             traces = count(cols$traces), drops = count(cols$drops), replays = count(cols$replays),
             eager_calls = count(cols$eager_calls), stringsAsFactors = FALSE, row.names = NULL)
}

# The engine's TraceForward of a fitted model (NULL without tracing). `capture`: TRUE asks for
# tracing even when the fit did not trace (a TraceForward with the static check is kept).
fitted_trace <- function(py, capture = NULL) {
  trace <- if (reticulate::py_has_attr(py, "capture")) reticulate::py_get_attr(py, "capture")
  if (inherits(trace, "python.builtin.NoneType")) trace <- NULL
  if (isTRUE(capture) && is.null(trace)) {
    trace <- capture_callback(TRUE)
    reticulate::py_set_attr(py, "capture", trace)
  }
  if (isFALSE(capture)) NULL else trace
}

# (the engine object may or may not convert its results)
as_r <- function(x) if (is_py(x)) reticulate::py_to_r(x) else x

# The `Tracing:` line of verbose output (formatted by the engine).
capture_message <- function(trace, verbose) {
  if (!is.null(trace) && isTRUE(verbose)) cli::cat_line("Tracing: ", as_r(trace$summary()))
}

as_capture <- function(capture, null_ok = FALSE) {
  if (null_ok && is.null(capture)) return(NULL)
  if (is.logical(capture) && length(capture) == 1 && !is.na(capture)) return(capture)
  rlang::abort(sprintf("`capture` must be TRUE or FALSE%s, got %s.", if (null_ok) " or NULL" else "",
                       paste(format(capture), collapse = ", ")), class = "value_error")
}
