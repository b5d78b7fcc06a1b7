#' Learning rate finder
#'
#' Trains the model for `steps` batches while the learning rate grows from `start_lr` to
#' `end_lr`, recording the loss of every batch (luz's `lr_finder()`). A fresh model is trained;
#' `object` is not changed. Plot the result to choose a learning rate.
#'
#' @param object A `luz_module_generator` (from [setup()]).
#' @param data Training data, as in [fit()].
#' @param steps Number of batches (and learning rates) to try.
#' @param start_lr,end_lr Smallest and largest learning rate.
#' @param log_spaced_intervals Whether the learning rates are spaced evenly on a log scale.
#' @param ... `dataloader_options`, as in [fit()].
#' @param verbose Currently unused (the search prints nothing), kept for luz's signature.
#' @return A `data.frame(lr, loss)` of class `lr_records`, one row per step; `plot()` it.
#' @examples
#' \dontrun{
#' records <- lr_finder(model, train_dl, start_lr = 1e-6, end_lr = 1)
#' plot(records)
#' }
#' @export
lr_finder <- function(object, data, steps = 100, start_lr = 1e-7, end_lr = 1e-1, log_spaced_intervals = TRUE,
                      ..., verbose = NULL) {
  check_luz_module(object, "lr_finder")
  dots <- rlang::list2(...)
  unknown <- setdiff(names(dots) %||% rep("", length(dots)), "dataloader_options")
  if (length(unknown)) {
    rlang::abort("`...` of `lr_finder()` only takes `dataloader_options`.", class = "value_error")
  }
  if (!is_whole(as.double(steps)) || length(steps) != 1) {
    rlang::abort("`steps` must be a whole number.", class = "value_error")
  }
  res <- engine_call(
    engine_module("lr_finder")$lr_finder, object$py, deferred_data(data, "data", as_engine_data),
    steps = as.integer(steps), start_lr = as.double(start_lr), end_lr = as.double(end_lr),
    log_spaced = isTRUE(log_spaced_intervals), diverge_factor = NULL,  # luz records every step
    dataloader_options = as_py_dataloader_options(dots$dataloader_options),
    verbose = FALSE
  )
  out <- data.frame(lr = as.numeric(unlist(res$lr)), loss = as.numeric(unlist(res$loss)))
  class(out) <- c("lr_records", "data.frame")
  out
}

#' @export
print.lr_records <- function(x, ...) {
  NextMethod()
}

#' @export
plot.lr_records <- function(x, ...) {
  rlang::check_installed("ggplot2", "to plot the learning rate finder results.")
  loss <- x$loss
  avg <- 0
  smoothed <- numeric(length(loss))
  for (i in seq_along(loss)) {
    avg <- 0.9 * avg + 0.1 * loss[i]
    smoothed[i] <- avg / (1 - 0.9^i)
  }
  df <- data.frame(lr = x$lr, loss = loss, smoothed = smoothed)
  ggplot2::ggplot(df, ggplot2::aes(x = .data$lr)) +
    ggplot2::geom_line(ggplot2::aes(y = .data$loss), linetype = "dotted") +
    ggplot2::geom_line(ggplot2::aes(y = .data$smoothed), colour = "cyan", linewidth = 1) +
    ggplot2::scale_x_log10() +
    ggplot2::labs(x = "Learning Rate", y = "Loss")
}
