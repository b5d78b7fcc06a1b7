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

# What tracing did in a fit: one row per key (mode and input shapes).
capture_frame <- function(callback) {
  if (is.null(callback)) return(NULL)
  report <- reticulate::py_to_r(reticulate::py_get_attr(callback, "report"))
  status <- vapply(report, function(v) as.character(v), character(1))
  traced <- status == "traced"
  data.frame(key = names(report) %||% character(), traced = traced,
             reason = ifelse(traced, NA_character_, status), stringsAsFactors = FALSE, row.names = NULL)
}

capture_summary <- function(frame) {
  if (is.null(frame) || !nrow(frame)) return("nothing traced")
  rows <- ifelse(frame$traced, "traced", paste("eager:", frame$reason))
  paste(sprintf("%s (%s)", rows, frame$key), collapse = "; ")
}

as_capture <- function(capture, null_ok = FALSE) {
  if (null_ok && is.null(capture)) return(NULL)
  if (is.logical(capture) && length(capture) == 1 && !is.na(capture)) return(capture)
  rlang::abort(sprintf("`capture` must be TRUE or FALSE%s, got %s.", if (null_ok) " or NULL" else "",
                       paste(format(capture), collapse = ", ")), class = "value_error")
}
