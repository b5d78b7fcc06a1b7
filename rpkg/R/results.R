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
  metrics_data_frame(object$records)
}

#' @rdname get_metrics
#' @export
get_metrics.luz_module_evaluation <- function(object, ...) {
  df <- metrics_data_frame(object$records)
  df <- df[df$set == "valid" & df$epoch == 1, c("metric", "value")]
  rownames(df) <- NULL
  df
}

#' @rdname get_metrics
#' @export
get_metrics.pyluz.context.Context <- function(object, ...) {
  metrics_data_frame(object$records)
}

#' @export
get_metrics.default <- function(object, ...) {
  rlang::abort(sprintf("`get_metrics()` has no method for objects of class <%s>.",
                       paste(class(object), collapse = "/")), class = "value_error")
}

# The rows of the engine's `metrics_frame()`: dict values (several optimizers) give
# `<metric>_<key>` rows, list values `<metric>_<i>` (0-based, as the engine).
flatten_metric <- function(name, value) {
  if (is.list(value) && !is.null(names(value))) {
    return(list(names = paste0(name, "_", names(value)), values = unlist(lapply(value, as.numeric))))
  }
  if (length(value) > 1 || is.list(value)) {
    value <- unlist(value)
    return(list(names = paste0(name, "_", seq_along(value) - 1L), values = as.numeric(value)))
  }
  list(names = name, values = if (is.null(value)) NA_real_ else as.numeric(value))
}

metrics_data_frame <- function(records) {
  set <- metric <- character()
  epoch <- integer()
  value <- numeric()
  for (s in c("train", "valid")) {
    per_epoch <- records$metrics[[s]]
    for (e in seq_along(per_epoch)) {
      values <- per_epoch[[e]]
      for (nm in names(values)) {
        flat <- flatten_metric(nm, values[[nm]])
        n <- length(flat$names)
        set <- c(set, rep(s, n))
        metric <- c(metric, flat$names)
        epoch <- c(epoch, rep(e, n))
        value <- c(value, flat$values)
      }
    }
  }
  data.frame(set = set, metric = metric, epoch = epoch, value = value, stringsAsFactors = FALSE)
}

pretty_sec <- function(s) {
  if (!length(s) || is.na(s)) return("NA")
  if (s < 1) return(sprintf("%.0fms", s * 1000))
  if (s < 60) return(sprintf("%.1fs", s))
  if (s < 3600) return(sprintf("%dm %.1fs", s %/% 60, s %% 60))
  sprintf("%dh %dm %.0fs", s %/% 3600, (s %% 3600) %/% 60, s %% 60)
}

last_metric_lines <- function(records, set) {
  entries <- records$metrics[[set]]
  if (!length(entries)) return(character())
  last <- entries[[length(entries)]]
  vapply(names(last), function(nm) paste0(nm, ": ", format_metric_value(last[[nm]])), character(1))
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
