LuzMetric <- R6::R6Class(
  "LuzMetric",
  lock_objects = FALSE,
  public = list(
    initialize = function() {},
    format = function(x) format_metric_value(x),
    to = function(device) {
      for (nm in ls(self, all.names = FALSE)) {
        value <- self[[nm]]
        if (!is.function(value) && is_py(value) && reticulate::py_has_attr(value, "to") &&
            reticulate::py_has_attr(value, "device")) {
          self[[nm]] <- reticulate::py_call(reticulate::py_get_attr(value, "to"), device = device)
        }
      }
      invisible(self)
    }
  )
)

# luz's display of a metric value (round(v, 4)); the rule lives in the engine.
format_metric_value <- function(x) {
  engine_module("metrics")$format_metric_value(x)
}

#' Create a new metric
#'
#' Defines a metric with luz's API: `initialize()` sets the state (it runs at the start of
#' every epoch, for training and validation separately), `update(preds, target)` accumulates
#' it every batch, and `compute()` returns the value as a plain R number (or a named list of
#' numbers). `abbrev` is the name shown in the progress output and, lowercased, in the
#' records; without it the class name is used. `super$` works with `inherit`, also with the
#' built-in metrics.
#'
#' @param name Class name of the metric.
#' @param ... Named public members: `abbrev`, `initialize`, `update`, `compute`, others.
#' @param private,active Private and active members, as in [R6::R6Class()].
#' @param parent_env Enclosing environment of the methods.
#' @param inherit Another `luz_metric()` definition (e.g. [luz_metric_mse]) to inherit from.
#' @param update_every Call `update()` once every `update_every` batches, on their predictions
#'   and targets concatenated along the first dimension (opt-in; `NULL`: that of `inherit`,
#'   else 1, luz's one call per batch). Every call into R costs tens of microseconds, so a
#'   metric that is cheap per row gets cheaper per batch. The pending batches are kept on the
#'   device, detached, and `compute()` (end of the epoch, each refresh of the progress bar)
#'   gives them to `update()` first, so no batch is left out. Under distributed data parallel
#'   training the pending batches are the global ones, as `update()` sees without it.
#'
#'   This gives luz's values for a metric whose state is a sum over samples, e.g. the count of
#'   correct rows of an accuracy or the sum of absolute errors of a mean absolute error: the
#'   sum over a concatenation is the sum of the batch sums. It changes the value of a metric
#'   that averages per-batch values (the mean of batch means weighs each call, now `update_every`
#'   batches, as one), of one whose `update()` reads `ctx$iter` or other per-batch fields of
#'   `ctx` (they describe the last batch of the group), and of one that needs every batch's
#'   rows on their own.
#' @return A function with the arguments of `initialize`; calling it gives a
#'   `luz_metric_generator` to pass to [setup()] (`metrics = list(...)`).
#' @seealso `vignette("get-started")` shows a metric whose state stays a tensor.
#' @examples
#' luz_metric_accuracy2 <- luz_metric(
#'   abbrev = "Acc",
#'   initialize = function() {
#'     self$correct <- 0
#'     self$total <- 0
#'   },
#'   update = function(preds, target) {
#'     pred <- torch_argmax(preds, dim = 2)
#'     self$correct <- self$correct + (pred == target)$
#'       to(dtype = torch_float())$
#'       sum()$
#'       item()
#'     self$total <- self$total + pred$numel()
#'   },
#'   compute = function() {
#'     self$correct / self$total
#'   }
#' )
#' metric <- luz_metric_accuracy2()
#'
#' # The same counts, kept as tensors and updated once every 8 batches
#' luz_metric_accuracy3 <- luz_metric(
#'   abbrev = "Acc",
#'   initialize = function() {
#'     self$correct <- torch_zeros(1)
#'     self$total <- 0
#'   },
#'   update = function(preds, target) {
#'     self$correct <- self$correct + (torch_argmax(preds, dim = 2) == target)$sum()
#'     self$total <- self$total + target$numel()
#'   },
#'   compute = function() self$correct$item() / self$total,
#'   update_every = 8
#' )
#' @family luz_metrics
#' @export
luz_metric <- function(name = NULL, ..., private = NULL, active = NULL, parent_env = parent.frame(),
                       inherit = NULL, update_every = NULL) {
  public <- rlang::list2(...)
  cls <- make_r6_class(name, public, private, active, parent_env,
                       inherit_class(inherit, LuzMetric, "luz_metric"))
  every <- check_update_every(update_every %||% attr(inherit, "update_every") %||% 1L)
  gen <- constructor_with_formals(cls, function(r6_class, ...) {
    structure(new_metric_generator(r6_class, ...), update_every = every)
  })
  attr(gen, "r6_class") <- cls
  attr(gen, "update_every") <- every
  class(gen) <- c("luz_metric_fn", "function")
  gen
}

check_update_every <- function(x) {
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || x < 1 || x != round(x)) {
    rlang::abort(sprintf("`update_every` must be a whole number >= 1, got %s.",
                         paste(format(x), collapse = ", ")), class = "value_error")
  }
  as.integer(x)
}

new_metric_generator <- function(r6_class, ...) {
  args <- list(...)
  name <- r6_class$classname
  structure(
    list(new = function() do.call(r6_class$new, args), r6_class = r6_class, args = args),
    # luz's class vector (its generators claim R6ClassGenerator too; `$new()` is all they offer)
    class = c(if (!is.null(name)) paste0(name, "_generator"), "luz_metric_generator", "R6ClassGenerator")
  )
}

#' @export
print.luz_metric_fn <- function(x, ...) {
  cat("<luz_metric> ", attr(x, "r6_class")$classname %||% "(unnamed)", "\n", sep = "")
  cat("  Call it to create the metric: ", deparse_call_formals(x), "\n", sep = "")
  invisible(x)
}

#' @export
print.luz_metric_generator <- function(x, ...) {
  cat("<luz_metric_generator> ", x$r6_class$classname %||% "(unnamed)", "\n", sep = "")
  invisible(x)
}

#' Metric sets
#'
#' Metrics for training and validation: `metrics` are used in both phases, `train_metrics`
#' only in training, `valid_metrics` only in validation. The loss is always tracked.
#'
#' @param metrics,train_metrics,valid_metrics A metric (e.g. `luz_metric_accuracy()`) or a
#'   list of them.
#' @return A `luz_metric_set` to pass to [setup()] as `metrics`.
#' @examples
#' luz_metric_set(
#'   metrics = list(luz_metric_accuracy()),
#'   valid_metrics = list(luz_metric_multiclass_auroc(from_logits = TRUE))
#' )
#' @family luz_metrics
#' @export
luz_metric_set <- function(metrics = NULL, train_metrics = NULL, valid_metrics = NULL) {
  as_list <- function(x) if (is.null(x)) list() else if (is_single_metric(x)) list(x) else x
  out <- list(metrics = as_list(metrics), train_metrics = as_list(train_metrics),
              valid_metrics = as_list(valid_metrics))
  for (nm in names(out)) lapply(out[[nm]], check_metric, argument = nm)
  structure(out, class = "luz_metric_set")
}

#' @export
print.luz_metric_set <- function(x, ...) {
  label <- function(ms) paste(vapply(ms, metric_label, character(1)), collapse = ", ")
  cat("<luz_metric_set>\n")
  cat("  metrics:       ", label(x$metrics), "\n", sep = "")
  cat("  train_metrics: ", label(x$train_metrics), "\n", sep = "")
  cat("  valid_metrics: ", label(x$valid_metrics), "\n", sep = "")
  invisible(x)
}

metric_label <- function(m) {
  if (inherits(m, "luz_metric_generator")) return(m$r6_class$classname %||% "metric")
  if (inherits(m, "luz_metric_fn")) return(attr(m, "r6_class")$classname %||% "metric")
  if (is_py(m)) return(as.character(reticulate::py_str(m)))
  "?"
}

is_single_metric <- function(x) {
  inherits(x, c("luz_metric_generator", "luz_metric_fn")) || is_py(x)
}

check_metric <- function(m, argument = "metrics") {
  if (!(is_single_metric(m))) {
    rlang::abort(sprintf("Expected an object with class <luz_metric_generator> in `%s`, got <%s>.",
                         argument, paste(class(m), collapse = "/")), class = "value_error")
  }
  invisible(m)
}

# ---- conversion to engine metrics ------------------------------------------------------------

# `owner`: as in setup() (bridge.R, `owned_function()`); NULL for metrics used in one call.
as_engine_metrics <- function(metrics, argument = "metrics", owner = NULL) {
  if (is.null(metrics)) return(NULL)
  if (inherits(metrics, "luz_metric_set")) {
    conv <- function(ms, nm) lapply(ms, as_engine_metric, argument = nm, owner = owner)
    return(engine_module("metrics")$MetricSet(
      metrics = conv(metrics$metrics, "metrics"),
      train_metrics = conv(metrics$train_metrics, "train_metrics"),
      valid_metrics = conv(metrics$valid_metrics, "valid_metrics")
    ))
  }
  if (is_single_metric(metrics)) metrics <- list(metrics)
  if (!is.list(metrics)) {
    rlang::abort(sprintf("`%s` must be a list of metrics or a luz_metric_set(), got <%s>.", argument,
                         paste(class(metrics), collapse = "/")), class = "value_error")
  }
  lapply(metrics, as_engine_metric, argument = argument, owner = owner)
}

as_engine_metric <- function(m, argument = "metrics", owner = NULL) {
  if (is_py(m)) return(m)
  # luz's docs pass the uncalled constructor (`metrics = list(luz_metric_accuracy)`): call it.
  if (inherits(m, "luz_metric_fn")) m <- m()
  check_metric(m, argument)
  builtin <- builtin_py_metric(m)
  if (!is.null(builtin)) return(builtin)
  label <- m$r6_class$classname %||% "metric"
  make <- function() r_metric_parts(m$new(), label)
  if (!is.null(owner)) make <- owned_function(make, owner, sprintf("metric `%s`", label))
  factory <- r_callable(make)
  engine_module("interop.metrics")$RMetric(factory, label = label,
                                           update_every = attr(m, "update_every") %||% 1L)
}

# The functions of one R metric instance, for the engine (see pyluz/interop/metrics.py).
r_metric_parts <- function(metric, label) {
  abbrev <- metric$abbrev %||% label
  # Errors carry the metric's class for luz's message ("... and class <name/LuzMetric/R6>").
  tag <- function(e) {
    e$luz_class <- class(metric)
    r_error_tag(e)
  }
  # `update` runs every batch: one R closure (errors tagged as by `r_callable()`). The engine
  # calls `update_tensors`, the same closure without argument conversion (cheaper; a tensor
  # reaches R as the same tensor object either way), when preds and target are tensors, and
  # `update` (arguments converted: lists of tensors become R lists) otherwise.
  update <- function(preds, target) {
    withCallingHandlers(metric$update(preds, target), error = tag, interrupt = r_interrupt_tag)
    NULL
  }
  list(
    abbrev = as.character(abbrev)[1],
    update = update,
    update_tensors = reticulate::r_to_py(update, convert = FALSE),
    compute = function() withCallingHandlers(as_plain_value(metric$compute()), error = tag, interrupt = r_interrupt_tag),
    bind_ctx = r_callable(function(ctx) bind_context(metric, ctx), returns = FALSE),
    to = r_callable(function(device) metric$to(device = device), returns = FALSE)
  )
}
