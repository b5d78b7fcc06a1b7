# Progress output in luz's layout, drawn in R and driven by the engine's Progress callback:
#   Epoch 3/10
#   10/50 [=====>-------] - ETA: 2s - Loss: 1.645 - Acc: 0.5
#   Train metrics: Loss: 1.6453 - Acc: 0.5
# The bar is the `progress` package's bar as luz configures it (format ":current/:total [:bar]",
# " - ETA: :eta", one " - Name: :value " token per metric; ":current/unk [:spin] - Rate: ..."
# when the length is unknown), written here with the same messages, so output captured from luz
# (tests, knitted documents) reads the same. Options, as in luz: `luz.force_progress_bar` (draw
# bars also when the output is not a terminal, at every step) and `luz.show_progress_bar_eta`.

progress_inform <- function(text) {
  rlang::inform(text)
}

# One message without a newline, as the progress package writes its bar.
progress_write <- function(text) {
  cond <- structure(list(message = text, call = NULL), class = c("message", "condition"))
  withRestarts({
    signalCondition(cond)
    cat(text, file = stderr(), sep = "")
  }, muffleMessage = function() NULL)
  invisible()
}

# progress's "terse" durations: 3s, 2m, 1h, 4d.
terse_duration <- function(secs) {
  if (!is.finite(secs)) return("?s")
  units <- c(s = 1, m = 60, h = 3600, d = 86400)
  unit <- utils::tail(names(units)[secs >= units | names(units) == "s"], 1)
  paste0(round(secs / units[[unit]]), unit)
}

# The text of one bar: what progress' `render()` draws for luz's format.
progress_bar_text <- function(bar, metrics_text) {
  width <- bar$width
  elapsed <- as.double(Sys.time() - bar$start, units = "secs")
  if (is.null(bar$total)) {
    bar$spin <- bar$spin %% 4L + 1L
    text <- sprintf("%d/unk [%s]", as.integer(bar$current), c("-", "\\", "|", "/")[bar$spin])
    if (bar$show_eta) {
      rate <- if (elapsed > 0) bar$current / elapsed else 0
      text <- paste0(text, " - Rate: ", format(rate, digits = 2), " iter/s")
    }
  } else {
    text <- sprintf("%d/%d [:bar]", as.integer(bar$current), as.integer(bar$total))
    if (bar$show_eta) {
      eta <- if (bar$current >= bar$total) 0 else elapsed * (bar$total / bar$current - 1)
      text <- paste0(text, " - ETA: ", terse_duration(eta))
    }
  }
  # the engine's "Loss: 1.645 - Acc: 0.5" as luz's tokens "Loss: 1.645 " joined by " - "
  if (nzchar(metrics_text)) {
    tokens <- paste0(strsplit(metrics_text, " - ", fixed = TRUE)[[1]], " ")
    text <- paste(c(text, paste(tokens, collapse = " - ")), collapse = " - ")
  }
  if (!is.null(bar$total)) {
    bar_width <- max(0L, width - nchar(sub(":bar", "", text, fixed = TRUE)))
    done <- bar$current >= bar$total
    complete_len <- round(bar_width * min(1, bar$current / bar$total))
    drawn <- paste0(strrep("=", max(0, complete_len - 1)),
                    if (done) "=" else if (complete_len >= 1) ">" else "",
                    strrep("-", bar_width - complete_len))
    text <- sub(":bar", drawn, text, fixed = TRUE)
  }
  if (nchar(text) > width) text <- paste0(substr(text, 1, width - 3), "...")
  text
}

new_progress_renderer <- function() {
  bar <- NULL
  clear_line <- function() progress_write(paste0("\r", strrep(" ", bar$width)))

  bar_begin <- function(phase, total) {
    force_bar <- isTRUE(getOption("luz.force_progress_bar", FALSE))
    bar <<- new.env(parent = emptyenv())
    bar$total <- if (is.null(total)) NULL else as.double(total)
    bar$current <- 0
    bar$width <- getOption("width") - 2L
    bar$show_eta <- isTRUE(getOption("luz.show_progress_bar_eta", TRUE))
    bar$supported <- force_bar || cli::is_dynamic_tty()
    # luz shows bars after 0.2 s (a `cli.progress_show_after` setting wins), forced ones at once
    bar$show_after <- if (force_bar) 0 else getOption("cli.progress_show_after", 0.2)
    bar$start <- Sys.time()
    bar$visible <- FALSE
    bar$finished <- FALSE
    bar$last <- ""
    bar$spin <- 0L
  }
  bar_update <- function(current, metrics_text) {
    if (is.null(bar) || !bar$supported || bar$finished || current <= bar$current && current > 0) return()
    bar$current <- current
    if (!bar$visible) bar$visible <- as.double(Sys.time() - bar$start, units = "secs") >= bar$show_after
    if (bar$visible) {
      text <- progress_bar_text(bar, metrics_text)
      if (!identical(text, bar$last)) {
        if (nchar(bar$last) > nchar(text)) clear_line()
        progress_write("\r")
        progress_write(text)
        bar$last <- text
      }
    }
    if (!is.null(bar$total) && current >= bar$total) bar_finish()
  }
  bar_finish <- function() {
    bar$finished <- TRUE
    if (bar$visible) {
      clear_line()
      progress_write("\r")
    }
  }
  bar_end <- function() {
    bar <<- NULL
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
  fns <- lapply(fns, r_callable, returns = FALSE)
  # forced bars are drawn at every step, as luz's; otherwise the engine refreshes every 0.1 s
  fns$refresh_interval <- if (isTRUE(getOption("luz.force_progress_bar", FALSE))) 0 else 0.1
  fns
}
