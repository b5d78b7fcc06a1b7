# The registry of R conditions that travel through Python. reticulate 1.28 flattens an R error
# raised inside a function Python called into `RuntimeError(message)`: class, call and fields are
# lost. So the calling handler `r_error_tag()` stores the condition under an id and re-raises
# "[[rcond:<id>]] <message>"; when the error comes back to R, `r_error_lookup()` /
# `take_condition()` return the original condition (and drop it from the registry) so it can be
# re-signalled as it was (docs/reticulate.md). R modules, datasets, callbacks and metrics all go
# through it (`r_callable()` in bridge.R installs the handler).

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

take_condition <- function(id) {
  r_error_lookup(simpleError(sprintf("[[rcond:%s]]", format(id))))
}
