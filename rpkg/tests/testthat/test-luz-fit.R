# fit / predict / evaluate / get_metrics / print / plot on small real data.

py_model <- function(fx, torch, metrics = NULL, lr = 0.05) {
  setup(fx$Net, loss = torch$nn$CrossEntropyLoss(), optimizer = torch$optim$Adam, metrics = metrics) %>%
    set_hparams(n_in = 4, hidden = 16, n_out = 3) %>%
    set_opt_hparams(lr = lr)
}

np_array <- function(t) as_array(t$detach()$cpu())

test_that("fit returns luz's fitted object; get_metrics, print and plot follow luz", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(128)
  torch$manual_seed(1)
  fitted <- py_model(fx, torch) %>%
    fit(list(d$x, d$y), epochs = 3, valid_data = 0.25, verbose = FALSE)
  expect_s3_class(fitted, "luz_module_fitted")
  expect_named(fitted, c("ctx", "py", "r_setup"))  # `$model` and `$records` are read from the engine
  expect_true(inherits(fitted$model, "torch.nn.modules.module.Module"))
  expect_equal(fitted$ctx$hparams, list(n_in = 4L, hidden = 16L, n_out = 3L))
  expect_equal(fitted$ctx$opt_hparams, list(lr = 0.05))
  expect_length(fitted$records$metrics$train, 3)
  expect_length(fitted$records$metrics$valid, 3)

  df <- get_metrics(fitted)
  expect_equal(names(df), c("set", "metric", "epoch", "value"))
  expect_equal(df$set, rep(c("train", "valid"), each = 3))
  expect_equal(df$epoch, rep(1:3, 2))
  expect_equal(df$value[df$set == "valid"], vapply(fitted$records$metrics$valid, function(r) r$loss, 1))
  # training improves on this separable problem
  expect_lt(df$value[3], df$value[1])

  out <- cli::ansi_strip(capture.output(print(fitted)))
  expect_equal(out[1], "A `luz_module_fitted`")
  expect_match(out[2], "Time")
  expect_match(out[3], "Total time: ")
  expect_match(out[4], "Avg time per training epoch: ")
  expect_true(all(c("Metrics observed in the last epoch.", "loss: ") %in% c(out, substr(out, 1, 6))))
  info <- grep("Training:|Validation:", out)
  expect_length(info, 2)
  expect_equal(out[info[1] + 1], paste0("loss: ", round(fitted$records$metrics$train[[3]]$loss, 4)))
  expect_equal(out[info[2] + 1], paste0("loss: ", round(fitted$records$metrics$valid[[3]]$loss, 4)))
  expect_true(any(grepl("Model", out)))
  expect_true(any(grepl("An `nn_module` containing", out, fixed = TRUE)))   # R torch's module print

  skip_if_not_installed("ggplot2")
  p <- plot(fitted)
  expect_s3_class(p, "ggplot")
  expect_equal(p$data, df)
  built <- ggplot2::ggplot_build(p)
  expect_equal(nrow(built$layout$layout), 2) # loss x (train, valid)
  expect_equal(sort(unique(as.character(built$layout$layout$set))), c("train", "valid"))
})

test_that("epochs, dataloader_options and data kinds map to the engine", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(100)
  model <- py_model(fx, torch)
  seen <- new.env()
  probe <- luz_callback("probe", on_fit_begin = function() {
    seen$min <- ctx$min_epochs
    seen$max <- ctx$max_epochs
    seen$train_batches <- length(ctx$train_data)
    seen$valid_batches <- length(ctx$valid_data)
  }, on_train_batch_begin = function() seen$batch <- ctx$input$shape)
  fit(model, list(d$x, d$y), epochs = c(1, 2), callbacks = probe(), verbose = FALSE,
      valid_data = list(d$x[1:30, ], d$y[1:30]), dataloader_options = list(batch_size = 25))
  expect_equal(c(seen$min, seen$max), c(1, 2))
  expect_equal(seen$train_batches, 4)  # 100 / 25, drop_last
  expect_equal(seen$valid_batches, 2)  # 30 / 25 rounded up
  expect_equal(seen$batch, c(25, 4))
  # R double -> float32, R integer -> int64
  dtypes <- new.env()
  probe2 <- luz_callback("probe2", on_train_batch_begin = function() {
    dtypes$x <- ctx$input$dtype
    dtypes$y <- ctx$target$dtype
  })
  fit(model, list(d$x, d$y), epochs = 1, callbacks = probe2(), verbose = FALSE)
  expect_equal(as.character(reticulate::py_str(dtypes$x)), "torch.float32")
  expect_equal(as.character(reticulate::py_str(dtypes$y)), "torch.int64")
  # an as_dataloader() result, and a dataloader with options is an error
  dl <- as_dataloader(list(d$x, d$y), batch_size = 10, shuffle = TRUE)
  expect_equal(length(dl), 10)
  expect_s3_class(fit(model, dl, epochs = 1, verbose = FALSE), "luz_module_fitted")
  expect_error(fit(model, dl, epochs = 1, verbose = FALSE, dataloader_options = list(batch_size = 5)),
               "dataloader_options", class = "pyluz_error")
  expect_error(fit(model, list(d$x, d$y), epochs = "a", verbose = FALSE), "epochs", class = "value_error")
})

test_that("predict stacks batch outputs, passes extra arguments to the module's predict()", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(70)
  torch$manual_seed(2)
  fitted <- py_model(fx, torch) %>% fit(list(d$x, d$y), epochs = 1, verbose = FALSE)
  p <- predict(fitted, d$x)
  expect_equal(unlist(p$shape), c(70, 3))
  # the fixture's predict() is softmax(forward(x) / temperature)
  expect_equal(rowSums(np_array(p)), rep(1, 70), tolerance = 1e-6)
  fitted$model$eval()
  logits <- np_array(fitted$model$forward(torch$tensor(d$x, dtype = torch$float32)))
  expect_equal(np_array(p), exp(logits) / rowSums(exp(logits)), tolerance = 1e-5)
  p2 <- predict(fitted, d$x, temperature = 2)
  expect_equal(np_array(p2), exp(logits / 2) / rowSums(exp(logits / 2)), tolerance = 1e-5)
  parts <- predict(fitted, list(d$x, d$y), stack = FALSE, dataloader_options = list(batch_size = 32))
  expect_type(parts, "list")
  expect_equal(vapply(parts, function(t) unlist(t$shape)[1], 1), c(32, 32, 6))
  expect_error(predict(fitted, d$x, 2), "must be named")
})

test_that("evaluate computes loss and metrics; metrics= overrides setup's", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(64)
  torch$manual_seed(3)
  fitted <- py_model(fx, torch) %>% fit(list(d$x, d$y), epochs = 1, verbose = FALSE)
  ev <- evaluate(fitted, list(d$x, d$y))
  expect_s3_class(ev, "luz_module_evaluation")
  m <- get_metrics(ev)
  expect_equal(names(m), c("metric", "value"))
  expect_equal(m$metric, "loss")
  # the mean of per-batch losses (luz's unweighted average) over batches of 32
  fitted$model$eval()
  ce <- torch$nn$CrossEntropyLoss()
  xt <- torch$tensor(d$x, dtype = torch$float32)
  yt <- torch$tensor(d$y, dtype = torch$int64)
  batch_loss <- function(i) ce(fitted$model$forward(xt[i, ]), yt[i])$item()
  manual <- mean(c(batch_loss(1:32), batch_loss(33:64)))
  expect_equal(m$value, manual, tolerance = 1e-6)
  count <- luz_metric(abbrev = "N", initialize = function() self$n <- 0,
                      update = function(preds, target) self$n <- self$n + preds$shape[1],
                      compute = function() self$n)
  ev2 <- evaluate(fitted, list(d$x, d$y), metrics = list(count()))
  expect_equal(get_metrics(ev2), data.frame(metric = c("loss", "n"), value = c(m$value, 64)))
  out <- capture.output(print(ev))
  expect_equal(out[1], "A `luz_module_evaluation`")
  expect_equal(out[3], sprintf("loss: %.4f", m$value))
})

test_that("verbose = TRUE prints luz's progress lines", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(64)
  msgs <- testthat::capture_messages(
    py_model(fx, torch) %>% fit(list(d$x, d$y), epochs = 2, valid_data = 0.25, verbose = TRUE)
  )
  msgs <- sub("\n$", "", msgs)
  expect_equal(msgs[c(1, 4)], c("Epoch 1/2", "Epoch 2/2"))
  expect_match(msgs[2], "^Train metrics: Loss: [0-9]+(\\.[0-9]{1,4})?$")
  expect_match(msgs[3], "^Valid metrics: Loss: [0-9]+(\\.[0-9]{1,4})?$")
  expect_length(capture_messages(py_model(fx, torch) %>% fit(list(d$x, d$y), epochs = 1, verbose = FALSE)), 0)
})

test_that("accelerator() maps to the engine's Accelerator", {
  skip_if_no_engine()
  acc <- accelerator(cpu = TRUE)
  expect_equal(as.character(reticulate::py_str(acc$device)), "cpu")
  expect_error(accelerator(cpu = NA), "cpu")
  expect_error(accelerator(cuda_index = -1), "cuda_index")
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(32)
  fitted <- py_model(fx, torch) %>% fit(list(d$x, d$y), epochs = 1, verbose = FALSE, accelerator = acc)
  expect_equal(as.character(reticulate::py_str(fitted$model$fc1$weight$device)), "cpu")
})

test_that("R-defined modules, losses and optimizers from the compatibility layer train", {
  skip_if_no_engine()
  d <- make_class_data(96)
  net <- nn_module(
    "mlp",
    initialize = function(hidden) {
      self$fc1 <- nn_linear(4, hidden)
      self$fc2 <- nn_linear(hidden, 3)
    },
    forward = function(x) {
      x %>% self$fc1() %>% nnf_relu() %>% self$fc2()
    }
  )
  torch_manual_seed(1)
  fitted <- net %>%
    setup(loss = nn_cross_entropy_loss(), optimizer = optim_adam, metrics = list(luz_metric_accuracy())) %>%
    set_hparams(hidden = 32) %>%
    set_opt_hparams(lr = 0.05) %>%
    fit(list(d$x, d$y + 1L), epochs = 8, valid_data = 0.2, verbose = FALSE)
  acc <- get_metrics(fitted)
  expect_gt(tail(acc$value[acc$set == "valid" & acc$metric == "acc"], 1), 0.8)
  p <- predict(fitted, d$x)
  expect_equal(mean(as_array(torch_argmax(p, dim = 2)) == d$y + 1L),
               unlist(evaluate(fitted, list(d$x, d$y + 1L))$records$metrics$valid[[1]]$acc),
               tolerance = 1e-6)
})

test_that("lr_finder() returns luz's lr_records and plots them", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(64)
  model <- py_model(fx, torch)
  records <- lr_finder(model, list(d$x, d$y), steps = 10, start_lr = 1e-4, end_lr = 1,
                       dataloader_options = list(batch_size = 16))
  expect_s3_class(records, c("lr_records", "data.frame"))
  expect_equal(names(records), c("lr", "loss"))
  expect_equal(nrow(records), 10)
  expect_equal(records$lr, 1e-4 * (1 / 1e-4)^((1:10) / 10), tolerance = 1e-9)  # luz: start_lr * m^k, k = 1..steps
  expect_true(all(is.finite(records$loss)))
  expect_equal(model$py$opt_hparams, list(lr = 0.05))  # the module given is unchanged
  skip_if_not_installed("ggplot2")
  expect_s3_class(plot(records), "ggplot")
  expect_error(lr_finder(model, list(d$x, d$y), steps = 2.5), "steps")
})

test_that("in a dynamic terminal the engine drives luz's progress bar", {
  fx <- luz_fixtures()
  torch <- py_torch()
  withr::local_options(cli.dynamic = TRUE, cli.progress_show_after = 0)
  set.seed(1)
  x <- matrix(rnorm(2000), 500, 4)
  y <- sample(0:2, 500, TRUE)
  msgs <- capture_messages(
    py_model(fx, torch) %>% fit(list(x, y), epochs = 1, verbose = TRUE, dataloader_options = list(batch_size = 5))
  )
  bar <- grep("/100 ", msgs, value = TRUE)
  expect_true(length(bar) >= 1)
  expect_match(bar[1], "[0-9]+/100 .* - ETA: .* - Loss: [0-9.]+")
  expect_true("Train metrics" %in% substr(msgs, 1, 13))
})
