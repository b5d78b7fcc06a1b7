# Progress output drawn in R with cli, driven by the engine's Progress callback (which calls the
# renderer at most every ~100 ms, see pyluz/callbacks/progress.py). Layout as luz:
#   Epoch 3/10
#   <bar per phase, with the metrics so far>
#   Train metrics: Loss: 0.1234 - Acc: 0.9500
#   Valid metrics: ...

progress_inform <- function(text) {
  rlang::inform(text)
}

new_cli_renderer <- function() {
  state <- new.env(parent = globalenv())
  state$id <- NULL
  state$metrics <- ""

  bar_begin <- function(phase, total) {
    state$metrics <- ""
    # In logs and knitted documents only the per-epoch lines are printed (as the engine does).
    if (!cli::is_dynamic_tty()) return(invisible())
    format <- if (is.null(total)) {
      "{cli::pb_current}/unk {cli::pb_spin} - Rate: {cli::pb_rate}{metrics}"
    } else {
      "{cli::pb_current}/{cli::pb_total} {cli::pb_bar} - ETA: {cli::pb_eta}{metrics}"
    }
    # luz shows its bars after 0.2 s (cli's default is 2 s); a user setting wins
    old <- options(cli.progress_show_after = getOption("cli.progress_show_after", 0.2))
    on.exit(options(old), add = TRUE)
    state$id <- cli::cli_progress_bar(
      format = format, total = if (is.null(total)) NA else total,
      clear = TRUE, auto_terminate = FALSE, .auto_close = FALSE, .envir = state
    )
  }
  bar_update <- function(current, metrics_text) {
    if (is.null(state$id)) return()
    state$metrics <- if (nzchar(metrics_text)) paste0(" - ", metrics_text) else ""
    cli::cli_progress_update(id = state$id, set = current, .envir = state)
  }
  bar_end <- function() {
    if (!is.null(state$id)) cli::cli_progress_done(id = state$id, .envir = state)
    state$id <- NULL
  }
  fns <- list(
    epoch_begin = function(epoch, max_epochs) {
      progress_inform(sprintf("Epoch %d/%d", as.integer(epoch), as.integer(max_epochs)))
    },
    bar_begin = bar_begin,
    bar_update = bar_update,
    bar_end = bar_end,
    epoch_metrics = function(phase, text) {
      progress_inform(sprintf("%s metrics: %s", if (phase == "train") "Train" else "Valid", text))
    },
    message = function(text) progress_inform(text)
  )
  lapply(fns, r_callable, returns = FALSE)
}
