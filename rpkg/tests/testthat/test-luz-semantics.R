# luz's loop semantics from R, as luz code (and luz's own tests) rely on them.

lin_net <- function() {
  nn_module(
    initialize = function(input_size = 10, output_size = 1) self$fc <- nn_linear(input_size, output_size),
    forward = function(x) self$fc(x)
  )
}

reg_data <- function(n = 64) {
  torch_manual_seed(1)
  list(torch_randn(n, 10), torch_randn(n, 1))
}

test_that("setup() returns a module generator that still builds the module", {
  skip_if_no_engine()
  mod <- lin_net() %>% setup(loss = nn_mse_loss(), optimizer = optim_adam)
  expect_s3_class(mod, "luz_module_generator")
  expect_true(is.function(mod))
  m <- mod(10, 3)
  expect_equal(dim(as_array(m(torch_randn(2, 10)))), c(2, 3))
  expect_output(print(mod), "<luz_module_generator>", fixed = TRUE)
})

test_that("a custom backward sees ctx, and set_hparams() before setup() keeps its values", {
  skip_if_no_engine()
  seen <- NULL
  out <- lin_net() %>%
    set_hparams(input_size = 10, output_size = 2) %>%
    setup(loss = nn_mse_loss(), optimizer = optim_adam, backward = function(loss) {
      seen <<- c(seen, ctx$iter)
      loss$backward()
    }) %>%
    fit(list(torch_randn(32, 10), torch_randn(32, 2)), epochs = 1, verbose = 0,
        dataloader_options = list(batch_size = 8))
  expect_equal(seen, 1:4)
  expect_equal(out$ctx$hparams$output_size, 2)
})

test_that("ctx has luz's methods: get_metrics_df() and get_formatted_metrics()", {
  skip_if_no_engine()
  seen <- NULL
  cb <- luz_callback(on_epoch_end = function() {
    seen <<- ctx$get_metrics_df()
    formatted <<- ctx$get_formatted_metrics("train")
  })
  formatted <- NULL
  out <- lin_net() %>% setup(loss = nn_mse_loss(), optimizer = optim_adam) %>%
    fit(reg_data(), epochs = 2, verbose = FALSE, callbacks = list(cb()))
  expect_equal(seen, get_metrics(out))
  expect_equal(seen$epoch, 1:2)
  expect_equal(formatted$loss, as.character(round(out$records$metrics$train[[2]]$loss, 4)))
})

test_that("verbose takes 0 and 1; engine argument errors have luz's class value_error", {
  skip_if_no_engine()
  model <- lin_net() %>% setup(loss = nn_mse_loss(), optimizer = optim_adam)
  expect_silent(fit(model, reg_data(), epochs = 1, verbose = 0))
  expect_error(fit(model, reg_data(), epochs = 1, verbose = 2), "verbose", class = "value_error")
  expect_error(fit(model, reg_data(), epochs = 1, verbose = FALSE, valid_data = 2), "2", class = "value_error")
  dl <- as_dataloader(reg_data())
  expect_error(fit(model, dl, epochs = 1, verbose = FALSE, dataloader_options = list(batch_size = 2)),
               "already a dataloader", class = "value_error")
  # an engine warning is an R warning
  expect_warning(fit(model, reg_data(), epochs = 1, verbose = FALSE, valid_data = dl,
                     dataloader_options = list(batch_size = 2)), "already a dataloader")
})

test_that("luz_metric() generators claim R6ClassGenerator; AUROC per class is a list", {
  skip_if_no_engine()
  metric <- luz_metric(name = "MyMetric", initialize = function(y) self$y <- y,
                       update = function(preds, target) NULL, compute = function() self$y)
  init <- metric(y = 1)
  expect_s3_class(init, "R6ClassGenerator")
  expect_equal(init$new()$compute(), 1)
  m <- luz_metric_multiclass_auroc(average = "none")$new()
  m$update(torch_tensor(rbind(c(0.9, 0.1), c(0.2, 0.8), c(0.6, 0.4))), torch_tensor(c(1L, 2L, 2L)))
  value <- m$compute()
  expect_type(value, "list")
  expect_length(value, 2)
})

test_that("an LR scheduler with verbose = TRUE prints R torch's lines", {
  skip_if_no_engine()
  model <- lin_net() %>% setup(loss = nn_mse_loss(), optimizer = optim_adam)
  msgs <- character()
  withCallingHandlers(
    fit(model, reg_data(), epochs = 3, verbose = FALSE, callbacks = list(
      luz_callback_lr_scheduler(lr_multiplicative, verbose = TRUE, lr_lambda = function(epoch) 0.5))),
    message = function(m) {
      msgs <<- c(msgs, conditionMessage(m))
      invokeRestart("muffleMessage")
    }
  )
  expect_equal(trimws(msgs), c("Adjusting learning rate of group 1 to 0.0010",
                               "Adjusting learning rate of group 1 to 0.0005",
                               "Adjusting learning rate of group 1 to 0.0003",
                               "Adjusting learning rate of group 1 to 0.0001"))
})

test_that("forced progress bars follow the progress package's layout, as luz's", {
  skip_if_no_engine()
  fitted <- lin_net() %>% setup(loss = nn_mse_loss(), optimizer = optim_adam) %>%
    fit(reg_data(), epochs = 1, verbose = FALSE)
  msgs <- character()
  withr::with_options(list(luz.force_progress_bar = TRUE, luz.show_progress_bar_eta = FALSE, width = 80), {
    withCallingHandlers(
      predict(fitted, reg_data()[1], verbose = TRUE, dataloader_options = list(batch_size = 16)),
      message = function(m) {
        msgs <<- c(msgs, conditionMessage(m))
        invokeRestart("muffleMessage")
      }
    )
  })
  # width 78 (the option minus 2); "1/4 [" and "]" leave 72 characters for the bar
  bar <- function(k, head) {
    done <- round(72 * k / 4)
    paste0(head, "[", strrep("=", done - 1), if (k == 4) "=" else ">", strrep("-", 72 - done), "]")
  }
  expect_equal(msgs, c("\r", bar(1, "1/4 "), "\r", bar(2, "2/4 "), "\r", bar(3, "3/4 "), "\r", bar(4, "4/4 "),
                       paste0("\r", strrep(" ", 78)), "\r"))
})

test_that("records are the engine's: a checkpoint restored with its records shows at once", {
  skip_if_no_engine()
  dir <- withr::local_tempdir()
  out <- lin_net() %>% setup(loss = nn_mse_loss(), optimizer = optim_adam) %>%
    fit(reg_data(), epochs = 3, verbose = FALSE, callbacks = list(
      luz_callback_model_checkpoint(dir, monitor = "train_loss")))
  expect_equal(nrow(get_metrics(out)), 3)
  first <- sort(list.files(dir, full.names = TRUE))[1]
  luz_load_checkpoint(out, first, restore_records = TRUE)
  expect_equal(nrow(get_metrics(out)), 1)
  expect_length(out$records$metrics$train, 1)
})

test_that("durations print the same in R and in Python", {
  skip_if_no_engine()
  expect_equal(pyluz:::pretty_sec(75.2), "1m 15s")
  expect_equal(pyluz:::pretty_sec(0.05), "50ms")
})

test_that("luz_load() rebuilds an R-defined model in a fresh R session: it predicts and evaluates", {
  skip_if_no_engine()
  skip_if_not_installed("processx")
  path <- withr::local_tempfile(fileext = ".safetensors")
  data_path <- withr::local_tempfile(fileext = ".rds")
  d <- reg_data()
  fitted <- lin_net() %>%
    setup(loss = nn_mse_loss(), optimizer = optim_adam, metrics = list(luz_metric_mae())) %>%
    fit(d, epochs = 2, verbose = FALSE)
  expect_silent(luz_save(fitted, path))
  ev <- get_metrics(evaluate(fitted, d))
  saveRDS(list(x = as_array(d[[1]]), y = as_array(d[[2]]), pred = as_array(predict(fitted, d[1]))), data_path)
  script <- withr::local_tempfile(fileext = ".R")
  writeLines(c(
    "library(pyluz)",
    sprintf("d <- readRDS('%s'); m <- luz_load('%s')", data_path, path),
    "x <- torch_tensor(d$x); y <- torch_tensor(d$y)",
    "stopifnot(isTRUE(all.equal(as_array(predict(m, list(x))), d$pred, tolerance = 1e-6)))",
    "ev <- get_metrics(evaluate(m, list(x, y)))",
    "cat(sprintf('%s=%.6f\\n', ev$metric, ev$value), sep = '')"
  ), script)
  res <- processx::run(file.path(R.home("bin"), "Rscript"), script, error_on_status = FALSE)
  expect_equal(res$status, 0, info = res$stderr)
  expect_equal(res$stdout, paste0(sprintf("%s=%.6f\n", ev$metric, ev$value), collapse = ""))
})
