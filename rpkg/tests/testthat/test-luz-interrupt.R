# Ctrl-C from R keeps the work: `rlang::interrupt()` in an R callback and a real SIGINT sent to an
# Rscript process (while Python runs, while an R callback runs, while an R module's forward runs)
# end the fit after `on_interrupt`, and `fitted <- fit(...)` receives the model and its records.

test_that("rlang::interrupt() in a callback runs on_interrupt and returns the fitted model", {
  skip_if_no_torch()
  net <- nn_module(initialize = function() self$fc <- nn_linear(10, 1), forward = function(x) self$fc(x))
  x <- torch_randn(64, 10)
  y <- torch_randn(64, 1)
  hello <- 0
  out <- net %>%
    setup(loss = nn_mse_loss(), optimizer = optim_adam) %>%
    fit(list(x, y), verbose = FALSE, epochs = 25, callbacks = list(
      luz_callback(on_epoch_begin = function() if (ctx$epoch == 3) rlang::interrupt())(),
      luz_callback(on_interrupt = function() hello <<- 1)()
    ))
  expect_s3_class(out, "luz_module_fitted")
  expect_equal(length(out$records$metrics$train), 2)
  expect_equal(hello, 1)
})

# The child fits for up to 200 epochs; it writes `marker` when it reaches the moment to interrupt
# (from R code, right before the part that should receive the signal) and prints what `fit()`
# returned. Interrupts must not reach R after fit() returns ("alive" is printed after a pause).
sigint_child <- function(where) {
  marker <- tempfile()
  script <- tempfile(fileext = ".R")
  writeLines(c(
    "library(pyluz)",
    sprintf("where <- '%s'; marker <- '%s'", where, marker),
    "signal_ready <- function() writeLines('ready', marker)",
    "net <- nn_module(",
    "  initialize = function() { self$fc <- nn_linear(10, 1); self$calls <- 0 },",
    "  forward = function(x) {",
    "    self$calls <- self$calls + 1",
    "    if (where == 'forward' && self$calls == 40) { signal_ready(); Sys.sleep(3) }",
    "    self$fc(x)",
    "  })",
    "model <- if (where == 'python') nn_linear else net",
    "hello <- 0",
    "cb <- luz_callback(on_epoch_end = function() {",
    "  if (ctx$epoch == 2 && where %in% c('python', 'callback')) signal_ready()",
    "  if (ctx$epoch == 2 && where == 'callback') Sys.sleep(3)",
    "}, on_interrupt = function() hello <<- 1)",
    "hp <- if (where == 'python') list(in_features = 10, out_features = 1) else list()",
    "x <- torch_randn(20000, 10); y <- torch_randn(20000, 1)",
    "fitted <- do.call(set_hparams, c(list(setup(model, loss = nn_mse_loss(), optimizer = optim_sgd)), hp)) %>%",
    "  fit(list(x, y), epochs = 200, verbose = FALSE, callbacks = list(cb()),",
    "      dataloader_options = list(batch_size = if (where == 'forward') 1000 else 10))",
    "cat(sprintf('epochs=%d hello=%d\\n', length(fitted$records$metrics$train), hello))",
    "Sys.sleep(0.5)",
    "cat('alive\\n')"
  ), script)
  p <- processx::process$new(file.path(R.home("bin"), "Rscript"), script, stdout = "|", stderr = "|")
  on.exit(p$kill(), add = TRUE)
  deadline <- Sys.time() + 120
  while (!file.exists(marker) && p$is_alive() && Sys.time() < deadline) Sys.sleep(0.05)
  expect_true(file.exists(marker), label = paste("the child reached the moment to interrupt:", where))
  Sys.sleep(0.3)
  p$signal(tools::SIGINT)
  p$wait(60000)
  list(out = paste(p$read_all_output_lines(), collapse = "\n"),
       err = paste(p$read_all_error_lines(), collapse = "\n"), status = p$get_exit_status())
}

for (where in c("python", "callback", "forward")) {
  test_that(sprintf("SIGINT while %s runs keeps the work", where), {
    skip_if_no_torch()
    skip_on_os("windows")
    skip_if_not_installed("processx")
    res <- sigint_child(where)
    info <- paste(res$out, res$err, sep = "\n")
    expect_equal(res$status, 0, info = info)
    epochs <- as.integer(sub(".*epochs=([0-9]+).*", "\\1", res$out))
    expect_true(epochs >= 1 && epochs < 200, info = info)
    expect_match(res$out, "hello=1", fixed = TRUE, info = info)
    expect_match(res$out, "alive", fixed = TRUE, info = info)
  })
}
