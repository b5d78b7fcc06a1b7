# luz's built-in metrics (`luz_metric_accuracy()`, ...): the engine's metric classes with luz's
# names and arguments. Each built-in is also an R6 class that delegates to the Python metric, so
# that user metrics can inherit from it (`super$update()`); used as is, the Python metric itself
# goes to the engine. Built with `luz_metric()` at load time, hence after metrics.R.

#' @include metrics.R
NULL

.builtin_metrics <- new.env(parent = emptyenv())

builtin_metric <- function(name, abbrev, py_class, initialize, to_py_args = function(args) args) {
  init <- initialize
  body(init) <- bquote({
    self$.py <- .(as.name("make_builtin_py"))(.(name), as.list(environment()))
  })
  gen <- luz_metric(
    name = name,
    abbrev = abbrev,
    initialize = init,
    update = function(preds, target) {
      self$.py$update(preds, target)
      invisible(NULL)
    },
    compute = function() {
      value <- self$.py$compute()
      # one value per class (average = "none") is a list in luz, not a vector
      if (is.numeric(value) && length(value) > 1) as.list(value) else value
    },
    parent_env = environment(builtin_metric)
  )
  defaults <- lapply(formals(initialize), eval)
  .builtin_metrics[[name]] <- list(r6_class = attr(gen, "r6_class"), py_class = py_class,
                                   to_py_args = to_py_args, defaults = defaults)
  gen
}

make_builtin_py <- function(name, args) {
  spec <- .builtin_metrics[[name]]
  for (nm in names(spec$defaults)) if (!nm %in% names(args)) args[nm] <- list(spec$defaults[[nm]])
  args <- spec$to_py_args(args)
  args <- args[!vapply(args, is.null, logical(1))]
  do.call(engine_module("metrics")[[spec$py_class]], args)
}

builtin_py_metric <- function(m) {
  name <- m$r6_class$classname
  spec <- if (!is.null(name)) .builtin_metrics[[name]]
  if (is.null(spec) || !identical(spec$r6_class, m$r6_class)) return(NULL)
  make_builtin_py(name, m$args)
}

thresholds_args <- function(args) {
  if (is_whole(args$num_thresholds)) args$num_thresholds <- as.integer(args$num_thresholds)
  if (!is.null(args$thresholds)) args$thresholds <- as.list(as.numeric(args$thresholds))
  args
}

#' Accuracy
#'
#' Share of samples whose highest score (`torch_argmax(preds, dim = 2)`) is the target class.
#' Targets are class indices `1..C`, as in R torch. Abbreviation "Acc".
#'
#' @return A metric generator to use in [setup()].
#' @examples
#' metric <- luz_metric_accuracy()
#' @family luz_metrics
#' @export
luz_metric_accuracy <- builtin_metric(
  "luz_metric_accuracy", "Acc", "Accuracy",
  initialize = function() NULL,
  to_py_args = function(args) list(index_base = 1L)
)

#' Binary accuracy
#'
#' Share of `(preds > threshold) == target`, for predictions that are probabilities and 0/1
#' targets. Abbreviation "Acc".
#'
#' @param threshold Value above which a prediction counts as the positive class.
#' @return A metric generator to use in [setup()].
#' @examples
#' metric <- luz_metric_binary_accuracy(threshold = 0.5)
#' @family luz_metrics
#' @export
luz_metric_binary_accuracy <- builtin_metric(
  "luz_metric_binary_accuracy", "Acc", "BinaryAccuracy",
  initialize = function(threshold = 0.5) NULL
)

#' Binary accuracy with logits
#'
#' [luz_metric_binary_accuracy()] after `torch_sigmoid()`: for models that output logits.
#' Abbreviation "Acc".
#'
#' @inheritParams luz_metric_binary_accuracy
#' @return A metric generator to use in [setup()].
#' @examples
#' metric <- luz_metric_binary_accuracy_with_logits()
#' @family luz_metrics
#' @export
luz_metric_binary_accuracy_with_logits <- builtin_metric(
  "luz_metric_binary_accuracy_with_logits", "Acc", "BinaryAccuracyWithLogits",
  initialize = function(threshold = 0.5) NULL
)

#' Mean absolute error
#'
#' Abbreviation "MAE".
#' @return A metric generator to use in [setup()].
#' @examples
#' metric <- luz_metric_mae()
#' @family luz_metrics
#' @export
luz_metric_mae <- builtin_metric("luz_metric_mae", "MAE", "MAE", initialize = function() NULL)

#' Mean squared error
#'
#' Abbreviation "MSE".
#' @return A metric generator to use in [setup()].
#' @examples
#' metric <- luz_metric_mse()
#' @family luz_metrics
#' @export
luz_metric_mse <- builtin_metric("luz_metric_mse", "MSE", "MSE", initialize = function() NULL)

#' Root mean squared error
#'
#' Abbreviation "RMSE".
#' @return A metric generator to use in [setup()].
#' @examples
#' metric <- luz_metric_rmse()
#' @family luz_metrics
#' @export
luz_metric_rmse <- builtin_metric("luz_metric_rmse", "RMSE", "RMSE", initialize = function() NULL)

#' Binary AUROC
#'
#' Area under the ROC curve for binary problems, computed on a fixed grid of thresholds (as
#' luz). Abbreviation "AUC".
#'
#' @param num_thresholds Number of thresholds of the grid (used when `thresholds` is `NULL`).
#' @param thresholds Explicit thresholds in (0, 1), or `NULL`.
#' @param from_logits If `TRUE`, `torch_sigmoid()` is applied to the predictions first.
#' @return A metric generator to use in [setup()].
#' @examples
#' metric <- luz_metric_binary_auroc(from_logits = TRUE)
#' @family luz_metrics
#' @export
luz_metric_binary_auroc <- builtin_metric(
  "luz_metric_binary_auroc", "AUC", "BinaryAUROC",
  initialize = function(num_thresholds = 200, thresholds = NULL, from_logits = FALSE) NULL,
  to_py_args = thresholds_args
)

#' Multiclass AUROC
#'
#' One-vs-rest area under the ROC curve. Targets are class indices `1..C`. Abbreviation "AUC".
#'
#' @inheritParams luz_metric_binary_auroc
#' @param from_logits If `TRUE`, the predictions go through a softmax over the class dimension.
#' @param average `"micro"` (all classes stacked), `"macro"` (mean of per-class AUCs),
#'   `"weighted"` (weighted by class frequency) or `"none"` (one value per class).
#' @return A metric generator to use in [setup()].
#' @examples
#' metric <- luz_metric_multiclass_auroc(average = "macro")
#' @family luz_metrics
#' @export
luz_metric_multiclass_auroc <- builtin_metric(
  "luz_metric_multiclass_auroc", "AUC", "MulticlassAUROC",
  initialize = function(num_thresholds = 200, thresholds = NULL, from_logits = FALSE,
                        average = c("micro", "macro", "weighted", "none")) NULL,
  to_py_args = function(args) {
    args <- thresholds_args(args)
    args$average <- match.arg(args$average, c("micro", "macro", "weighted", "none"))
    args$index_base <- 1L
    args
  }
)
