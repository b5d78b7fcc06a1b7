#' Get metrics
#'
#' The metrics recorded during training or evaluation, as a data frame.
#'
#' @param object A `luz_module_fitted` object (from [fit()]), a `luz_module_evaluation` (from
#'   [evaluate()]) or the training context `ctx` (inside callbacks).
#' @param ... Currently unused.
#' @return For fitted models and contexts, `data.frame(set, metric, epoch, value)` (training
#'   rows first, then validation rows, by epoch); for evaluations `data.frame(metric, value)`.
#'   With several optimizers the loss is reported per optimizer (`loss_<name>`).
#' @examples
#' \dontrun{
#' get_metrics(fitted)
#' get_metrics(evaluate(fitted, test_dl))
#' }
#' @export
get_metrics <- function(object, ...) UseMethod("get_metrics")

#' @rdname get_metrics
#' @export
get_metrics.luz_module_fitted <- function(object, ...) {
  engine_table("metrics_frame", reticulate::py_get_attr(object$py, "records"))
}

#' @rdname get_metrics
#' @export
get_metrics.luz_module_evaluation <- function(object, ...) {
  engine_table("evaluation_frame", object$py)
}

#' @rdname get_metrics
#' @export
get_metrics.pyluz.context.Context <- function(object, ...) {
  engine_table("metrics_frame", reticulate::py_get_attr(object, "records"))
}

#' @export
get_metrics.default <- function(object, ...) {
  rlang::abort(sprintf("`get_metrics()` has no method for objects of class <%s>.",
                       paste(class(object), collapse = "/")), class = "value_error")
}

# One of the engine's metrics tables (pyluz.results), as an R data frame: the columns travel as
# lists (no pandas conversion, which would warn on newer pandas).
engine_table <- function(fn, x) {
  results <- reticulate::import("pyluz.results", convert = FALSE)
  cols <- reticulate::py_to_r(results[[fn]](x)$to_dict("list"))
  cols <- lapply(cols, unlist)
  if ("epoch" %in% names(cols)) cols$epoch <- as.integer(cols$epoch)
  if ("value" %in% names(cols)) cols$value <- as.numeric(cols$value)
  if (!length(cols[[1]])) cols <- lapply(cols, function(c) if (is.null(c)) character() else c)
  data.frame(cols, stringsAsFactors = FALSE)
}

# Durations and metric values as the engine prints them (one rule for both languages).
pretty_sec <- function(s) {
  if (!length(s) || is.na(s)) return("NA")
  engine_module("results")$pretty_seconds(as.double(s))
}

last_metric_lines <- function(records, set) {
  entries <- records$metrics[[set]]
  if (!length(entries)) return(character())
  last <- entries[[length(entries)]]
  vapply(names(last), function(nm) paste0(nm, ": ", format_metric_value(last[[nm]])), character(1))
}

# `fitted$records`, `fitted$model` and `fitted$capture` are the engine's, read at each access (a
# checkpoint loaded into the fitted model with restore_records = TRUE shows at once; what tracing
# did includes later predict()/evaluate() calls).
#' @export
`$.luz_module_fitted` <- function(x, name) {
  if (name %in% c("records", "model")) {
    return(reticulate::py_to_r(reticulate::py_get_attr(.subset2(x, "py"), name)))
  }
  if (identical(name, "capture")) return(capture_frame(fitted_trace(.subset2(x, "py"))))
  .subset2(x, name)
}

#' @export
print.luz_module_fitted <- function(x, ...) {
  profile <- x$records$profile
  cli::cat_line("A `luz_module_fitted`")
  cli::cat_rule("Time")
  cli::cat_bullet("Total time: ", pretty_sec(sum(unlist(profile$fit))))
  train_times <- unlist(profile$train)
  if (length(train_times)) {
    cli::cat_bullet("Avg time per training epoch: ", pretty_sec(mean(train_times)))
  }
  cli::cat_line()
  cli::cat_rule("Results")
  cli::cat_line("Metrics observed in the last epoch.")
  cli::cat_line()
  for (set in c("train", "valid")) {
    lines <- last_metric_lines(x$records, set)
    if (length(lines)) {
      cli::cat_bullet(if (set == "train") "Training:" else "Validation:", bullet = "info",
                      bullet_col = "blue")
      cli::cat_line(lines)
    }
  }
  cli::cat_line()
  cli::cat_rule("Model")
  print(x$model)
  invisible(x)
}

#' @export
print.luz_module_evaluation <- function(x, ...) {
  cli::cat_line("A `luz_module_evaluation`")
  cli::cat_rule("Results")
  df <- get_metrics(x)
  if (nrow(df)) cli::cat_line(paste0(df$metric, ": ", vapply(df$value, format_metric_value, character(1))))
  invisible(x)
}

#' Plot the metrics of a fitted model
#'
#' One panel per metric (rows) and set (columns), values by epoch.
#'
#' @param x A `luz_module_fitted` object.
#' @param ... Currently unused.
#' @return A ggplot object.
#' @importFrom rlang .data
#' @examples
#' \dontrun{
#' plot(fitted)
#' }
#' @export
plot.luz_module_fitted <- function(x, ...) {
  rlang::check_installed("ggplot2", "to plot the metrics.")
  ggplot2::ggplot(get_metrics(x), ggplot2::aes(x = .data$epoch, y = .data$value)) +
    ggplot2::geom_point() +
    ggplot2::geom_line() +
    ggplot2::facet_grid(metric ~ set, scales = "free_y")
}
