# Optimizers and learning-rate schedulers.
#
# Design: each `optim_*` / `lr_*` is an ordinary R function with R torch's
# signature (so `optim_adam(model$parameters, lr = 0.01)` works and shows its
# arguments), carrying class `rtorch_optim_generator` / `rtorch_lr_generator`
# and the name of the PyTorch class.  When such a function is passed to
# Python (e.g. `setup(optimizer = optim_adam)` handing it to the engine),
# reticulate converts it with `r_to_py()` into a pure-Python factory
# (`pyluz.interop.torch_optim.OptimFactory` / `SchedulerFactory`, `.cls` holds
# `torch.optim.Adam` etc.): the engine calls `optimizer(params, **hparams)`
# without crossing back into R.  `rtorch_py_factory(optim_adam)` returns that
# factory explicitly.

.optim_generator <- function(py_name, fn) {
  structure(fn, py_name = py_name, class = c("rtorch_optim_generator", "function"))
}

.lr_generator <- function(py_name, fn) {
  structure(fn, py_name = py_name, class = c("rtorch_lr_generator", "function"))
}

.as_param_list <- function(params) {
  if (!is.null(params$params)) {
    params$params <- unname(params$params)
    return(list(params))
  }
  if (length(params) && is.list(params[[1]]) && !is.null(params[[1]]$params)) {
    return(lapply(params, function(g) {
      g$params <- unname(g$params)
      g
    }))
  }
  unname(params)
}

.factory_call <- function(kind, py_name, first, args) {
  f <- .pycall(.py("optim", kind), py_name)
  .pycall_list(f, list(first), args)
}

#' Optimizers
#'
#' R torch's optimizer constructors over `torch.optim`. `params` is usually
#' `model$parameters` (a named list) or a list of parameter groups. The
#' functions can also be passed uncalled, e.g. `setup(optimizer = optim_adam)`.
#'
#' @param params Parameters (`model$parameters`) or a list of parameter groups.
#' @param lr Learning rate.
#' @param betas,eps,weight_decay,amsgrad Adam(W) arguments.
#' @param momentum,dampening,nesterov SGD arguments.
#' @param alpha,centered RMSprop arguments.
#' @param lr_decay,initial_accumulator_value Adagrad arguments.
#' @return A `torch.optim.Optimizer` (`opt$zero_grad()`, `opt$step()`,
#'   `opt$param_groups[[1]]$lr`).
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   model <- nn_linear(3, 1)
#'   opt <- optim_adam(model$parameters, lr = 0.01)
#'   opt$param_groups[[1]]$lr
#' }
#' @name optimizers
NULL

.optim_body <- function(py_name) {
  force(py_name)
  function(env, fmls) {
    args <- .args_with_defaults(env, fmls)
    params <- args$params
    args$params <- NULL
    if (is.list(params)) params <- .as_param_list(params)
    .factory_call("optim", py_name, params, args)
  }
}

#' @rdname optimizers
#' @export
optim_adam <- .optim_generator("Adam", function(params, lr = 0.001, betas = c(0.9, 0.999), eps = 1e-08,
                                                weight_decay = 0, amsgrad = FALSE)
  .optim_body("Adam")(environment(), formals(sys.function())))
#' @rdname optimizers
#' @export
optim_adamw <- .optim_generator("AdamW", function(params, lr = 0.001, betas = c(0.9, 0.999), eps = 1e-08,
                                                  weight_decay = 0.01, amsgrad = FALSE)
  .optim_body("AdamW")(environment(), formals(sys.function())))
#' @rdname optimizers
#' @export
optim_sgd <- .optim_generator("SGD", function(params, lr = 0.001, momentum = 0, dampening = 0,
                                              weight_decay = 0, nesterov = FALSE)
  .optim_body("SGD")(environment(), formals(sys.function())))
#' @rdname optimizers
#' @export
optim_rmsprop <- .optim_generator("RMSprop", function(params, lr = 0.01, alpha = 0.99, eps = 1e-08,
                                                      weight_decay = 0, momentum = 0, centered = FALSE)
  .optim_body("RMSprop")(environment(), formals(sys.function())))
#' @rdname optimizers
#' @export
optim_adagrad <- .optim_generator("Adagrad", function(params, lr = 0.01, lr_decay = 0, weight_decay = 0,
                                                      initial_accumulator_value = 0, eps = 1e-10)
  .optim_body("Adagrad")(environment(), formals(sys.function())))

#' @export
r_to_py.rtorch_optim_generator <- function(x, convert = FALSE) {
  .pycall(.py("optim", "optim"), attr(x, "py_name"))
}

#' @export
r_to_py.rtorch_lr_generator <- function(x, convert = FALSE) {
  .pycall(.py("optim", "scheduler"), attr(x, "py_name"))
}

#' @export
print.rtorch_optim_generator <- function(x, ...) {
  cat("<optimizer generator> torch.optim.", attr(x, "py_name"), "\n", sep = "")
  invisible(x)
}

#' @export
print.rtorch_lr_generator <- function(x, ...) {
  cat("<lr scheduler generator> torch.optim.lr_scheduler.", attr(x, "py_name"), "\n", sep = "")
  invisible(x)
}

#' Python factory behind an optimizer or scheduler generator
#'
#' @param x `optim_adam`, `lr_step`, ... (uncalled).
#' @return A Python callable `f(params_or_optimizer, ...)` with `.cls` the
#'   PyTorch class.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   rtorch_py_factory(optim_adam)
#' }
#' @export
rtorch_py_factory <- function(x) {
  if (!inherits(x, c("rtorch_optim_generator", "rtorch_lr_generator"))) {
    stop("`x` must be an optim_* or lr_* function", call. = FALSE)
  }
  reticulate::r_to_py(x)
}

.lr_body <- function(py_name) {
  force(py_name)
  function(env, fmls) {
    args <- .args_with_defaults(env, fmls)
    opt <- args$optimizer
    args$optimizer <- NULL
    args$verbose <- NULL
    for (n in names(args)) if (is.function(args[[n]])) args[[n]] <- r_callable(args[[n]])
    with_r_errors(.factory_call("scheduler", py_name, opt, args))
  }
}

#' Learning rate schedulers
#'
#' R torch's scheduler constructors over `torch.optim.lr_scheduler`; call
#' `$step()` (with the metric for `lr_reduce_on_plateau()`).
#'
#' @param optimizer An optimizer.
#' @param step_size,gamma Step decay.
#' @param lr_lambda An R function of the epoch returning a factor.
#' @param max_lr,total_steps,epochs,steps_per_epoch,pct_start,anneal_strategy,cycle_momentum,base_momentum,max_momentum,div_factor,final_div_factor
#'   One-cycle policy arguments.
#' @param mode,factor,patience,threshold,threshold_mode,cooldown,min_lr,eps Plateau arguments.
#' @param T_max,eta_min Cosine annealing arguments.
#' @param last_epoch,verbose As in R torch (`verbose` is ignored).
#' @return A `torch.optim.lr_scheduler` object.
#' @examples
#' if (reticulate::py_module_available("torch")) {
#'   opt <- optim_sgd(nn_linear(2, 1)$parameters, lr = 0.1)
#'   sched <- lr_step(opt, step_size = 1, gamma = 0.5)
#'   opt$step()
#'   sched$step()
#'   opt$param_groups[[1]]$lr
#' }
#' @name lr_schedulers
NULL

#' @rdname lr_schedulers
#' @export
lr_step <- .lr_generator("StepLR", function(optimizer, step_size, gamma = 0.1, last_epoch = -1)
  .lr_body("StepLR")(environment(), formals(sys.function())))
#' @rdname lr_schedulers
#' @export
lr_multiplicative <- .lr_generator("MultiplicativeLR", function(optimizer, lr_lambda, last_epoch = -1,
                                                                verbose = FALSE)
  .lr_body("MultiplicativeLR")(environment(), formals(sys.function())))
#' @rdname lr_schedulers
#' @export
lr_lambda <- .lr_generator("LambdaLR", function(optimizer, lr_lambda, last_epoch = -1, verbose = FALSE)
  .lr_body("LambdaLR")(environment(), formals(sys.function())))
#' @rdname lr_schedulers
#' @export
lr_one_cycle <- .lr_generator("OneCycleLR", function(optimizer, max_lr, total_steps = NULL, epochs = NULL,
                                                     steps_per_epoch = NULL, pct_start = 0.3,
                                                     anneal_strategy = "cos", cycle_momentum = TRUE,
                                                     base_momentum = 0.85, max_momentum = 0.95,
                                                     div_factor = 25, final_div_factor = 10000,
                                                     last_epoch = -1, verbose = FALSE)
  .lr_body("OneCycleLR")(environment(), formals(sys.function())))
#' @rdname lr_schedulers
#' @export
lr_reduce_on_plateau <- .lr_generator("ReduceLROnPlateau", function(optimizer, mode = "min", factor = 0.1,
                                                                    patience = 10, threshold = 1e-04,
                                                                    threshold_mode = "rel", cooldown = 0,
                                                                    min_lr = 0, eps = 1e-08, verbose = FALSE)
  .lr_body("ReduceLROnPlateau")(environment(), formals(sys.function())))
#' @rdname lr_schedulers
#' @export
lr_cosine_annealing <- .lr_generator("CosineAnnealingLR", function(optimizer, T_max, eta_min = 0,
                                                                   last_epoch = -1, verbose = FALSE)
  .lr_body("CosineAnnealingLR")(environment(), formals(sys.function())))

#' @export
`$<-.torch.optim.optimizer.Optimizer` <- function(x, name, value) {
  if (identical(name, "param_groups")) {
    .pycall(.py("optim", "update_param_groups"), x, value)
  } else {
    reticulate::py_set_attr(x, name, value)
  }
  x
}


#' Define a custom optimizer
#'
#' R torch's `optimizer()`: `initialize(params, ...)` calls
#' `super$initialize(params, defaults)` with a named list of defaults;
#' `step(closure = NULL)` usually calls
#' `private$step_helper(closure, function(group, param, g, p) ...)`, which runs
#' the function, without gradient tracking, for every parameter that has a
#' gradient. `self$state$get(param)` / `self$state$set(param, list(...))` keep
#' per-parameter state. The result is a `torch.optim.Optimizer` (its state dict,
#' `zero_grad()` and param groups work as for built-in optimizers), usable as
#' `setup(optimizer = )`.
#'
#' @param name Class name.
#' @param inherit Another generator made by `optimizer()`.
#' @param ... Named methods and fields (`initialize`, `step`, ...).
#' @param private,active Named lists of private members and active bindings.
#' @param parent_env Environment the methods' enclosures inherit from.
#' @return A generator (function) of class `torch_optimizer_generator`.
#' @examples
#' if (torch_is_installed()) {
#'   optim_plain_sgd <- optimizer(
#'     "optim_plain_sgd",
#'     initialize = function(params, lr = 0.1) super$initialize(params, list(lr = lr)),
#'     step = function(closure = NULL) {
#'       private$step_helper(closure, function(group, param, g, p) {
#'         param$sub_(param$grad * group$lr)
#'       })
#'     }
#'   )
#'   w <- torch_ones(2, requires_grad = TRUE)
#'   opt <- optim_plain_sgd(list(w), lr = 0.5)
#'   (w * 2)$sum()$backward()
#'   opt$step()
#'   w   # 1 - 0.5 * 2 = 0
#' }
#' @export
optimizer <- function(name = NULL, inherit = NULL, ..., private = NULL, active = NULL,
                      parent_env = parent.frame()) {
  .new_generator("optimizer", name, inherit, list(...), private, active, parent_env,
                 "torch_optimizer_generator")
}

# Built-in members of optimizer() instances: private$step_helper() and self$state.
.optimizer_members <- function(st) {
  st$priv$step_helper <- function(closure, loop_fun) {
    opt <- .self_of(st)
    with_no_grad({
      loss <- NULL
      if (!is.null(closure)) loss <- with_enable_grad(closure())
      groups <- opt$param_groups
      for (g in seq_along(groups)) {
        group <- groups[[g]]
        for (p in seq_along(group$params)) {
          param <- group$params[[p]]
          if (is.null(param$grad)) next
          loop_fun(group, param, g, p)
        }
      }
      loss
    })
  }
  makeActiveBinding("state", function() {
    opt <- .self_of(st)
    list(get = function(key) .pycall(.py("optim", "state_get"), opt, key),
         set = function(key, value) invisible(.pycall(.py("optim", "state_set"), opt, key, value)))
  }, st$pub)
  invisible()
}

#' Define a custom learning-rate scheduler
#'
#' R torch's `lr_scheduler()`: `initialize(optimizer, ...)` calls
#' `super$initialize(optimizer, last_epoch, verbose)`; `get_lr()` returns the
#' learning rates (one per param group) for the current `self$last_epoch`;
#' `self$base_lrs` and `self$optimizer` are available. `$step()` advances it.
#' The result is a `torch.optim.lr_scheduler.LRScheduler`, usable with
#' `luz_callback_lr_scheduler()`.
#'
#' @inheritParams optimizer
#' @param inherit Another generator made by `lr_scheduler()`.
#' @return A generator (function) of class `lr_scheduler_generator`.
#' @examples
#' if (torch_is_installed()) {
#'   lr_halve <- lr_scheduler(
#'     "lr_halve",
#'     initialize = function(optimizer, last_epoch = -1, verbose = FALSE) {
#'       super$initialize(optimizer, last_epoch, verbose)
#'     },
#'     get_lr = function() lapply(self$base_lrs, function(lr) lr * 0.5^self$last_epoch)
#'   )
#'   opt <- optim_sgd(list(torch_ones(1, requires_grad = TRUE)), lr = 1)
#'   sched <- lr_halve(opt)
#'   sched$step()
#'   opt$param_groups[[1]]$lr   # 0.5
#' }
#' @export
lr_scheduler <- function(name = NULL, inherit = NULL, ..., private = NULL, active = NULL,
                         parent_env = parent.frame()) {
  .new_generator("lr_scheduler", name, inherit, list(...), private, active, parent_env,
                 "lr_scheduler_generator")
}

#' Is this an optimizer?
#' @param x Any object.
#' @return `TRUE` or `FALSE`.
#' @examples
#' if (torch_is_installed()) is_optimizer(optim_sgd(nn_linear(2, 1)$parameters, lr = 0.1))
#' @export
is_optimizer <- function(x) inherits(x, "torch_optimizer")
