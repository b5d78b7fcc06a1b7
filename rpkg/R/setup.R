#' Set up a module for training
#'
#' Gives a module its loss, optimizer and metrics, as luz's `setup()`. The result is a
#' `luz_module_generator`: give it hyperparameters with [set_hparams()] /
#' [set_opt_hparams()] and train it with [fit()].
#'
#' @param module An `nn_module()` definition (not instantiated), or a Python `nn.Module`
#'   subclass, e.g. `reticulate::import("team.models")$Net`. It is built inside `fit()` with
#'   the hyperparameters of [set_hparams()].
#' @param loss A loss module such as `nn_cross_entropy_loss()`, or a function
#'   `function(input, target)` returning a scalar tensor. If `NULL`, the module must define a
#'   `loss()` or a `step()` method.
#' @param optimizer An optimizer constructor such as `optim_adam`. If `NULL`, the module must
#'   define `set_optimizers()`.
#' @param metrics A list of metrics (e.g. `list(luz_metric_accuracy())`) or a
#'   [luz_metric_set()]. The loss is always tracked.
#' @param backward A function `function(loss)` replacing `loss$backward()`.
#' @param capture Whether [fit()] traces the forward of an `nn_module()` defined in R (as
#'   `jit_trace()` would) and replays the recorded tensor operations instead of running R code at
#'   every batch; the default of `fit(capture =)`. See the "Tracing" section of [fit()].
#' @return A `luz_module_generator`.
#' @examples
#' \dontrun{
#' model <- net %>%
#'   setup(loss = nn_cross_entropy_loss(), optimizer = optim_adam,
#'         metrics = list(luz_metric_accuracy()))
#' }
#' @export
setup <- function(module, loss = NULL, optimizer = NULL, metrics = NULL, backward = NULL,
                  capture = FALSE) {
  capture <- as_capture(capture)
  ctx_env <- NULL
  if (!is.null(backward) && is.function(backward) && !is_py(backward)) {
    # luz makes `backward` a method of the module, so it sees `ctx`: give it an enclosure where
    # `ctx` is bound for the duration of each fit (see `ctx_binder()`).
    ctx_env <- new.env(parent = environment(backward) %||% globalenv())
    environment(backward) <- ctx_env
  }
  # The engine's LuzModule holds these R functions only weakly, keyed by `owner`, which every R
  # object reaching it holds (see "R functions the engine keeps" in bridge.R).
  owner <- new_owner()
  py <- engine_call(
    pyluz_engine()$setup,
    as_engine_module(module, owner),
    loss = as_engine_loss(loss, owner),
    optimizer = as_engine_optimizer(optimizer, owner),
    metrics = as_engine_metrics(metrics, owner = owner),
    backward = if (!is.null(backward)) as_engine_function(backward, "backward", returns = FALSE, owner = owner)
  )
  # What luz_save() stores to rebuild an R-defined model in another R session (see serialize.R).
  r_setup <- list(module = module, loss = loss, loss_call = substitute(loss), optimizer = optimizer,
                  metrics = metrics, backward = backward, capture = capture)
  apply_pending_hparams(new_luz_module(py, module, ctx_env, r_setup, owner),
                        attr(module, "pyluz_pending", exact = TRUE))
}

# As luz's, the result is still a module generator: `mod(...)` builds the module (what `fit()`
# does with the hyperparameters of `set_hparams()`). The engine's LuzModule travels as an attribute,
# with the `owner` that keeps its R functions alive.
new_luz_module <- function(py, module, ctx_env = NULL, r_setup = NULL, owner = NULL) {
  force(module)
  gen <- function(...) module(...)
  structure(gen, py = py, module = module, ctx_env = ctx_env, r_setup = r_setup, owner = owner,
            class = "luz_module_generator")
}

#' @export
`$.luz_module_generator` <- function(x, name) attr(x, name, exact = TRUE)

# A list of one engine callback without breakpoints that binds `ctx` into `env` while a run lasts.
ctx_binder <- function(env) {
  if (is.null(env)) return(NULL)
  bind <- r_callable(function(ctx) assign("ctx", ctx, envir = env), returns = FALSE)
  list(engine_module("interop.callbacks")$RCallback("backward_ctx", bind_ctx = bind))
}

#' @export
print.luz_module_generator <- function(x, ...) {
  cli::cat_line("<luz_module_generator>")
  invisible(x)
}

#' Set hyperparameters
#'
#' `set_hparams()` stores the arguments the module is built with (passed to its
#' `initialize()`); `set_opt_hparams()` those of the optimizer (e.g. `lr`). Each call replaces
#' the previous values, as in luz.
#'
#' Whole numbers are sent to Python as integers, so `num_class = 10` works with modules
#' written in Python too.
#'
#' @param module A `luz_module_generator` (the result of [setup()]).
#' @param ... Named hyperparameters.
#' @return A new `luz_module_generator`.
#' @examples
#' \dontrun{
#' model <- net %>% setup(loss = nn_mse_loss(), optimizer = optim_adam) %>%
#'   set_hparams(num_class = 10) %>%
#'   set_opt_hparams(lr = 0.003)
#' }
#' @export
set_hparams <- function(module, ...) {
  fixed <- unpartial_module(sys.call(), module, ...)
  args <- check_no_na("set_hparams", named_dots_list("set_hparams", fixed$args))
  if (is_module_definition(fixed$module)) return(pending_hparams(fixed$module, "hparams", args))
  check_luz_module(fixed$module, "set_hparams")
  py <- engine_call_kwargs(pyluz_engine()$set_hparams, list(fixed$module$py), as_py_hparams(args))
  new_luz_module(py, fixed$module$module, fixed$module$ctx_env, fixed$module$r_setup, fixed$module$owner)
}

#' @rdname set_hparams
#' @export
set_opt_hparams <- function(module, ...) {
  fixed <- unpartial_module(sys.call(), module, ...)
  args <- check_no_na("set_opt_hparams", named_dots_list("set_opt_hparams", fixed$args))
  if (is_module_definition(fixed$module)) return(pending_hparams(fixed$module, "opt_hparams", args))
  check_luz_module(fixed$module, "set_opt_hparams")
  py <- engine_call_kwargs(pyluz_engine()$set_opt_hparams, list(fixed$module$py), args)
  new_luz_module(py, fixed$module$module, fixed$module$ctx_env, fixed$module$r_setup, fixed$module$owner)
}

# luz code may call set_hparams() before setup() (`net %>% set_hparams(...) %>% setup(...)`):
# the values wait on the module definition and setup() applies them (luz drops them).
is_module_definition <- function(x) {
  !inherits(x, "luz_module_generator") && (is.function(x) || is_py(x))
}

pending_hparams <- function(module, which, args) {
  pending <- attr(module, "pyluz_pending", exact = TRUE) %||% list()
  pending[[which]] <- args
  if (is_py(module)) {
    rlang::abort(sprintf("Call `set_%s()` after `setup()` for a Python module class.", which),
                 class = "value_error")
  }
  attr(module, "pyluz_pending") <- pending
  module
}

apply_pending_hparams <- function(gen, pending) {
  if (!is.null(pending$hparams)) gen <- do.call(set_hparams, c(list(gen), pending$hparams))
  if (!is.null(pending$opt_hparams)) gen <- do.call(set_opt_hparams, c(list(gen), pending$opt_hparams))
  gen
}

# R matches `m = 3` / `mod = 3` partially to the formal `module`; in set_hparams() such a name is a
# hyperparameter, so put it back into `...` and take the module from the first unnamed argument.
unpartial_module <- function(call, module, ...) {
  given <- names(as.list(call))[-1] %||% character()  # NULL when no argument is named
  partial <- given[!is.na(given) & nzchar(given) & given != "module" & startsWith("module", given)]
  args <- rlang::list2(...)
  if (!length(partial)) return(list(module = module, args = args))
  nms <- names(args) %||% rep("", length(args))
  first <- which(!nzchar(nms))[1]
  if (is.na(first)) return(list(module = module, args = args))
  hparam <- stats::setNames(list(module), partial[1])
  list(module = args[[first]], args = c(hparam, args[-first]))
}

check_no_na <- function(fn, args) {
  for (nm in names(args)) {
    x <- args[[nm]]
    if (is.atomic(x) && length(x) && anyNA(x)) {
      rlang::abort(sprintf("`%s` of `%s()` is NA; give a value (reticulate would send NA as `True`).", nm, fn),
                   class = "value_error")
    }
  }
  args
}

named_dots <- function(fn, ...) named_dots_list(fn, rlang::list2(...))

named_dots_list <- function(fn, args) {
  if (length(args) && (is.null(names(args)) || any(!nzchar(names(args))))) {
    rlang::abort(sprintf("Every argument of `%s()` must be named, e.g. `%s(lr = 0.01)`.", fn, fn),
                 class = "value_error")
  }
  args
}

engine_call_kwargs <- function(fn, args, kwargs, call = rlang::caller_env()) {
  do.call(engine_call, c(list(fn), args, kwargs, list(call = call)))
}

check_luz_module <- function(x, fn) {
  if (!inherits(x, "luz_module_generator")) {
    rlang::abort(sprintf("`%s()` expects the result of `setup()`, got an object of class <%s>.",
                         fn, paste(class(x), collapse = "/")), class = "value_error")
  }
  invisible(x)
}

# ---- what setup() hands to the engine ---------------------------------------------------------

# `owner`: the R objects holding the engine object keep `f` alive (bridge.R, `owned_function()`).
as_engine_function <- function(f, what, returns = TRUE, owner = NULL) {
  if (is_py(f)) return(f)
  if (!is.function(f)) {
    rlang::abort(sprintf("`%s` must be a function, got <%s>.", what, paste(class(f), collapse = "/")),
                 class = "value_error")
  }
  py_function(f, what, returns = returns, owner = owner)
}

as_engine_module <- function(module, owner = NULL) {
  if (is_py(module)) return(module)
  py <- compat_py_object(module)
  if (!is.null(py)) return(py)
  if (is.function(module)) return(py_function(module, "module", owner = owner))
  rlang::abort(sprintf("`module` must be an nn_module() definition or a Python nn.Module class, got <%s>.",
                       paste(class(module), collapse = "/")), class = "value_error")
}

as_engine_loss <- function(loss, owner = NULL) {
  if (is.null(loss) || is_py(loss)) return(loss)
  check_not_layer_constructor(loss, "loss")
  py <- compat_py_object(loss)
  if (!is.null(py)) return(py)
  as_engine_function(loss, "loss", owner = owner)
}

as_engine_optimizer <- function(optimizer, owner = NULL) {
  if (is.null(optimizer) || is_py(optimizer)) return(optimizer)
  py <- compat_py_object(optimizer)
  if (!is.null(py)) return(py)
  as_engine_function(optimizer, "optimizer", owner = owner)
}

# `loss = nn_mse_loss` passes the constructor, not a loss: it would be called as
# nn_mse_loss(pred, target) at the first batch and fail there with an unrelated message.
check_not_layer_constructor <- function(x, arg) {
  ns <- asNamespace("pyluz")
  if (!is.function(x) || !identical(environment(x), ns)) return(invisible())
  for (nm in grep("^nn_", getNamespaceExports(ns), value = TRUE)) {
    if (identical(get(nm, envir = ns), x)) {
      rlang::abort(sprintf("`%s` is the constructor `%s`, not a loss: call it, e.g. `%s = %s()`.", arg, nm, arg, nm),
                   class = "value_error")
    }
  }
  invisible()
}

# The Python object behind an object of the R-torch compatibility layer (`nn_module()`
# definitions, `optim_*`, `lr_*`): those classes have an `r_to_py()` method.
compat_py_object <- function(x) {
  if (!is.object(x)) return(NULL)
  for (cls in setdiff(class(x), "function")) {
    if (!is.null(utils::getS3method("r_to_py", cls, optional = TRUE))) return(reticulate::r_to_py(x))
  }
  NULL
}
