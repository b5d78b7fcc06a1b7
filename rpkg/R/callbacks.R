LuzCallback <- R6::R6Class(
  "LuzCallback",
  lock_objects = FALSE,
  public = list(
    initialize = function() {},
    set_ctx = function(ctx) {
      self$ctx <- ctx
      invisible(NULL)
    },
    call = function(callback_nm) {
      if (is.function(self[[callback_nm]])) self[[callback_nm]]()
      invisible(NULL)
    }
  )
)

#' Create a new callback
#'
#' Defines a callback with luz's API. Methods named after a breakpoint (`on_fit_begin`,
#' `on_epoch_end`, `on_train_batch_end`, ...) are called by the training loop; inside them
#' `self` is the callback and `ctx` the training context (`ctx$epoch`, `ctx$iter`,
#' `ctx$model`, `ctx$loss`, `ctx$records`, ...). Other members become fields or helper
#' methods; `weight` orders callbacks (lower runs first, default 0); `state_dict()` and
#' `load_state_dict(state)` make the callback restorable from checkpoints.
#'
#' Only the breakpoints the callback defines are called from the engine, so a callback
#' costs nothing at the breakpoints it does not define.
#'
#' Breakpoints, in order: `on_fit_begin`, then per epoch `on_epoch_begin`, `on_train_begin`,
#' per batch `on_train_batch_begin`, `on_train_batch_after_pred`, `on_train_batch_after_loss`,
#' `on_train_batch_before_backward`, `on_train_batch_before_step`, `on_train_batch_after_step`,
#' `on_train_batch_end`; `on_train_end`; `on_valid_begin`, per batch `on_valid_batch_begin`,
#' `on_valid_batch_after_pred`, `on_valid_batch_after_loss`, `on_valid_batch_end`;
#' `on_valid_end`; `on_epoch_end`; and `on_fit_end`. Also `on_early_stopping`, `on_interrupt`
#' and `on_predict_begin`, `on_predict_batch_begin`, `on_predict_batch_end`, `on_predict_end`.
#'
#' @param name Name of the callback (its class; used in error messages).
#' @param ... Named public members: breakpoint methods, `initialize`, other methods, fields.
#' @param private,active Private and active members, as in [R6::R6Class()].
#' @param parent_env Enclosing environment of the methods.
#' @param inherit Another `luz_callback()` definition to inherit from; `super$` works.
#' @return A function with the arguments of `initialize` that returns a new callback object
#'   (an R6 object of class `c(name, "LuzCallback", "R6")`).
#' @examples
#' print_callback <- luz_callback(
#'   name = "print_callback",
#'   initialize = function(message) {
#'     self$message <- message
#'   },
#'   on_train_batch_end = function() {
#'     cat("Iteration ", ctx$iter, "\n")
#'   },
#'   on_epoch_end = function() {
#'     cat(self$message, "\n")
#'   }
#' )
#' cb <- print_callback(message = "Done!")
#' @family luz_callbacks
#' @export
luz_callback <- function(name = NULL, ..., private = NULL, active = NULL, parent_env = parent.frame(),
                         inherit = NULL) {
  public <- rlang::list2(...)
  cls <- make_r6_class(name, public, private, active, parent_env,
                       inherit_class(inherit, LuzCallback, "luz_callback"))
  gen <- constructor_with_formals(cls, function(r6_class, ...) r6_class$new(...))
  attr(gen, "r6_class") <- cls
  class(gen) <- c("luz_callback_generator", "function")
  gen
}

#' @export
print.luz_callback_generator <- function(x, ...) {
  cls <- attr(x, "r6_class")
  cat("<luz_callback_generator> ", cls$classname %||% "(unnamed)", "\n", sep = "")
  cat("  Call it to create the callback: ", deparse_call_formals(x), "\n", sep = "")
  invisible(x)
}

deparse_call_formals <- function(f) {
  fmls <- names(formals(f))
  paste0("(", paste(fmls, collapse = ", "), ")")
}

# ---- conversion to engine callbacks ----------------------------------------------------------

as_engine_callbacks <- function(callbacks, argument = "callbacks") {
  if (is.null(callbacks)) return(list())
  if (!is.list(callbacks) || inherits(callbacks, "R6")) callbacks <- list(callbacks)
  lapply(seq_along(callbacks), function(i) as_engine_callback(callbacks[[i]], sprintf("%s[[%d]]", argument, i)))
}

as_engine_callback <- function(cb, argument = "callback") {
  if (is_py(cb)) return(cb)
  if (inherits(cb, "LuzCallback")) return(r_callback_adapter(cb))
  # luz's words (its tests pin them); a callback generator is a function, as in luz.
  got <- if (is.function(cb)) "function" else paste(class(cb), collapse = "/")
  rlang::abort(c(x = sprintf("Callbacks must have class <LuzCallback> but got <%s>", got),
                 i = if (is.function(cb)) "Perhaps you forgot to initialize the callback?"),
               class = "value_error")
}

# The Python adapter of an R callback instance: only the breakpoints it defines.
r_callback_adapter <- function(cb) {
  members <- ls(cb, all.names = TRUE)
  bps <- members[startsWith(members, "on_")]
  bps <- bps[vapply(bps, function(bp) is.function(cb[[bp]]), logical(1))]
  hooks <- lapply(bps, r_callback_hook, cb = cb)
  names(hooks) <- bps
  name <- class(cb)[1]
  .callback_classes[[name]] <- class(cb)
  weight <- cb$weight %||% 0
  if (!is.numeric(weight) || length(weight) != 1) {
    rlang::abort(sprintf("The `weight` of callback `%s` must be a number.", name), class = "value_error")
  }
  state_dict <- if (is.function(cb$state_dict)) r_callable(function() cb$state_dict())
  load_state_dict <- if (is.function(cb$load_state_dict)) {
    r_callable(function(state) cb$load_state_dict(state), returns = FALSE)
  }
  bind <- r_callable(function(ctx) {
    bind_context(cb, ctx)
    cb$ctx <- ctx
  }, returns = FALSE)
  engine_module("interop.callbacks")$RCallback(
    name, hooks = hooks, weight = as.numeric(weight), state_dict = state_dict,
    load_state_dict = load_state_dict, bind_ctx = bind
  )
}

# One breakpoint as a Python callable. It runs at every batch for `on_train_batch_*`, so it is a
# single R closure (errors tagged as by `r_callable()`, the method looked up at each call as luz
# does) handed over with `convert = FALSE`: no arguments to convert, `NULL` comes back as `None`.
# The engine adds the main-thread guard and turns gradients off (interop/callbacks.py).
r_callback_hook <- function(bp, cb) {
  force(bp)
  force(cb)
  reticulate::r_to_py(function() {
    withCallingHandlers(cb[[bp]](), error = r_error_tag, interrupt = r_interrupt_tag)
    NULL
  }, convert = FALSE)
}
