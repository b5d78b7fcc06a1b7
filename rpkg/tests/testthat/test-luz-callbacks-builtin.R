# luz's built-in callbacks (engine classes) used from R, with R callbacks alongside.

model_for <- function(fx, torch, lr = 0.05, metrics = NULL) {
  setup(fx$Net, loss = torch$nn$CrossEntropyLoss(), optimizer = torch$optim$SGD, metrics = metrics) %>%
    set_hparams(n_in = 4, hidden = 8, n_out = 3) %>%
    set_opt_hparams(lr = lr)
}

test_that("early stopping stops training and calls on_early_stopping; epochs = c(min, max)", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(64)
  stopped <- NULL
  watcher <- luz_callback("watcher", on_early_stopping = function() stopped <<- ctx$epoch)
  # an impossible min_delta: no epoch improves, so it stops after `patience` epochs
  fitted <- model_for(fx, torch) %>%
    fit(list(d$x, d$y), epochs = 10, valid_data = 0.25, verbose = FALSE,
        callbacks = list(luz_callback_early_stopping(min_delta = 100, patience = 2), watcher()))
  n <- length(fitted$records$metrics$train)
  expect_lt(n, 10)
  expect_equal(stopped, n)
  fitted <- model_for(fx, torch) %>%
    fit(list(d$x, d$y), epochs = c(5, 10), valid_data = 0.25, verbose = FALSE,
        callbacks = list(luz_callback_early_stopping(min_delta = 100, patience = 1)))
  expect_equal(length(fitted$records$metrics$train), 5)
  msgs <- capture_messages(model_for(fx, torch) %>%
    fit(list(d$x, d$y), epochs = 10, valid_data = 0.25, verbose = TRUE,
        callbacks = list(luz_callback_early_stopping(min_delta = 100, patience = 1))))
  expect_true(any(grepl("^Early stopping at epoch 2 of 10", msgs)))
})

test_that("checkpoints round-trip the state of R callbacks", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(64)
  dir <- withr::local_tempdir()
  counter <- luz_callback(
    "counter",
    initialize = function() self$count <- 0,
    on_epoch_end = function() self$count <- self$count + 1,
    state_dict = function() list(count = self$count),
    load_state_dict = function(state) self$count <- state$count
  )
  first <- counter()
  fitted <- model_for(fx, torch) %>%
    fit(list(d$x, d$y), epochs = 3, verbose = FALSE,
        callbacks = list(first, luz_callback_model_checkpoint(path = file.path(dir, "ckpt/"), monitor = "train_loss")))
  files <- sort(list.files(file.path(dir, "ckpt")))
  expect_length(files, 3)
  expect_match(files[3], "^epoch-03-train_loss-[0-9.]+\\.pt$")
  expect_equal(first$count, 3)

  second <- counter()
  seen <- NULL
  probe <- luz_callback("probe", on_epoch_begin = function() if (is.null(seen)) seen <<- second$count)
  model_for(fx, torch) %>%
    fit(list(d$x, d$y), epochs = 1, verbose = FALSE,
        callbacks = list(second, luz_callback_model_checkpoint(path = file.path(dir, "ckpt2/"), monitor = "train_loss"),
                         probe(),
                         luz_callback_resume_from_checkpoint(file.path(dir, "ckpt/"), restore_callbacks_state = TRUE)))
  expect_equal(seen, 3)
  expect_equal(second$count, 4)

  # luz_load_checkpoint into a fitted model restores its weights
  w3 <- as_array(fitted$model$fc1$weight)
  other <- model_for(fx, torch) %>% fit(list(d$x, d$y), epochs = 1, verbose = FALSE)
  luz_load_checkpoint(other, file.path(dir, "ckpt", files[3]))
  expect_equal(as_array(other$model$fc1$weight), w3)
})

test_that("lr scheduler (R's lr_step), csv logger, gradient clipping, keep best model", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(64)
  lrs <- numeric()
  lr_probe <- luz_callback("lr_probe", on_epoch_begin = function() {
    lrs <<- c(lrs, ctx$optimizers$opt$param_groups[[1]]$lr)
  })
  csv <- withr::local_tempfile(fileext = ".csv")
  fitted <- model_for(fx, torch, lr = 0.1) %>%
    fit(list(d$x, d$y), epochs = 4, valid_data = 0.25, verbose = FALSE,
        callbacks = list(lr_probe(), luz_callback_lr_scheduler(lr_step, step_size = 2, gamma = 0.5),
                         luz_callback_csv_logger(csv)))
  expect_equal(lrs, c(0.1, 0.1, 0.05, 0.05))
  logged <- utils::read.csv(csv)
  expect_equal(nrow(logged), 8)
  expect_equal(logged$loss[logged$set == "valid"],
               vapply(fitted$records$metrics$valid, function(r) r$loss, 1), tolerance = 1e-6)

  torch$manual_seed(1)
  clipped <- model_for(fx, torch) %>%
    fit(list(d$x, d$y), epochs = 2, verbose = FALSE, callbacks = list(luz_callback_gradient_clip(max_norm = 0)))
  torch$manual_seed(1)
  untrained <- model_for(fx, torch)$py$build_model()
  expect_equal(as_array(clipped$model$fc1$weight), as_array(untrained$fc1$weight))

  valid_data <- list(d$x[1:16, ], d$y[1:16])
  torch$manual_seed(4)
  best <- model_for(fx, torch, lr = 2) %>%
    fit(list(d$x[17:64, ], d$y[17:64]), epochs = 6, valid_data = valid_data, verbose = FALSE,
        callbacks = list(luz_callback_keep_best_model()))
  valid <- vapply(best$records$metrics$valid, function(r) r$loss, 1)
  expect_equal(get_metrics(evaluate(best, valid_data))$value, min(valid), tolerance = 1e-6)
  expect_error(luz_callback_lr_scheduler(lr_step, 2), "must be named")
})

test_that("every built-in callback constructor gives an engine callback", {
  skip_if_no_engine()
  dir <- withr::local_tempdir()
  cbs <- list(
    luz_callback_early_stopping(), luz_callback_model_checkpoint(file.path(dir, "c/")),
    luz_callback_keep_best_model(), luz_callback_lr_scheduler(lr_step, step_size = 1),
    luz_callback_csv_logger(file.path(dir, "x.csv")), luz_callback_gradient_clip(),
    luz_callback_mixup(), luz_callback_mixed_precision(), luz_callback_auto_resume(file.path(dir, "s.pt")),
    luz_callback_resume_from_checkpoint(file.path(dir, "c/")), luz_callback_gradient_accumulation(2),
    luz_callback_terminate_on_nan(), luz_callback_profile(), luz_callback_train_valid(),
    luz_callback_progress(), luz_callback_interrupt()
  )
  if (reticulate::py_module_available("tensorboard")) cbs <- c(cbs, list(luz_callback_tfevents(file.path(dir, "logs"))))
  base <- reticulate::import("pyluz")$Callback
  isinstance <- reticulate::import_builtins()$isinstance
  for (cb in cbs) expect_true(isinstance(cb, base))
  expect_equal(cbs[[1]]$weight, Inf)
  expect_error(luz_callback_early_stopping(mode = "sideways"), "mode", class = "pyluz_error")
  expect_error(luz_callback_mixup(0.4, 1), class = "rlib_error_dots_nonempty")
})

test_that("mixup from R: nnf_mixup and nn_mixup_loss", {
  skip_if_no_engine()
  torch_manual_seed(3)
  x <- torch_randn(8, 4)
  y <- torch_randint(1, 4, size = 8)$to(dtype = torch_long())
  w <- rep(0.25, 8)
  mixed <- nnf_mixup(x, y, w)
  expect_named(mixed, c("x", "y"))
  expect_named(mixed$y, c("ys", "weight"))
  expect_equal(as_array(mixed$y$ys$y1), as_array(y))
  loss <- nn_mixup_loss(nn_cross_entropy_loss())
  pred <- torch_randn(8, 3)
  plain <- nn_cross_entropy_loss()(pred, y)$item()
  expect_equal(loss(pred, y)$item(), plain, tolerance = 1e-6)
})
