# R errors raised inside code the engine calls come back with their class, message and call,
# plus where in the loop they happened; Python errors become `pyluz_error`s.

py_setup <- function(fx, torch, ...) {
  setup(fx$Net, loss = torch$nn$CrossEntropyLoss(), optimizer = torch$optim$SGD, ...) %>%
    set_hparams(n_in = 4, hidden = 8, n_out = 3) %>%
    set_opt_hparams(lr = 0.05)
}

test_that("an R error in a callback keeps its class and message and gets the loop context", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(64)
  failing <- luz_callback(
    "print_callback",
    on_epoch_end = function() {
      if (ctx$epoch == 2) rlang::abort("loss became weird", class = "my_custom_error", data = 42)
    }
  )
  err <- tryCatch(
    py_setup(fx, torch) %>% fit(list(d$x, d$y), epochs = 3, callbacks = list(failing()), verbose = FALSE),
    error = function(e) e
  )
  # luz's wrapping: "Error while calling callback ..." caused by the original condition, whose
  # classes the wrapper carries too (handlers for them still catch it)
  expect_s3_class(err, "my_custom_error")
  expect_s3_class(err, "luz_callback_error")
  expect_s3_class(err$parent, "rlang_error")
  expect_equal(err$parent$data, 42)
  expect_match(conditionMessage(err), "loss became weird", fixed = TRUE)
  expect_match(conditionMessage(err),
               "Error while calling callback with class <print_callback/LuzCallback/R6> at on_epoch_end.",
               fixed = TRUE)
  expect_match(conditionMessage(err), "The error happened at iter 2 of epoch 2.", fixed = TRUE)
  expect_false(grepl("rcond", conditionMessage(err)))
  expect_equal(err$pyluz_context$where, "on_epoch_end")
  expect_equal(err$pyluz_context$epoch, 2)
})

test_that("base R errors keep their call; classes of custom conditions survive", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(32)
  check_value <- function(x) stop("value is not positive: ", x)
  cb <- luz_callback("checker", on_train_batch_end = function() check_value(-ctx$iter))
  err <- tryCatch(
    py_setup(fx, torch) %>% fit(list(d$x, d$y), epochs = 1, callbacks = list(cb()), verbose = FALSE),
    error = function(e) e
  )
  expect_s3_class(err$parent, "simpleError")
  expect_equal(deparse(conditionCall(err$parent)), "check_value(-ctx$iter)")
  expect_equal(conditionMessage(err$parent), "value is not positive: -1")
  expect_match(conditionMessage(err), "class <checker/LuzCallback/R6> at on_train_batch_end.", fixed = TRUE)
  expect_true(length(err$parent$r_calls) > 0)

  cond <- structure(class = c("stop_training_please", "error", "condition"),
                    list(message = "custom condition", call = NULL))
  cb2 <- luz_callback("raiser", on_fit_begin = function() stop(cond))
  expect_error(
    py_setup(fx, torch) %>% fit(list(d$x, d$y), epochs = 1, callbacks = list(cb2()), verbose = FALSE),
    class = "stop_training_please"
  )
})

test_that("an R error in a metric keeps its class and names the metric and the step", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(64)
  bad_metric <- luz_metric(
    abbrev = "Bad",
    initialize = function() self$n <- 0,
    update = function(preds, target) {
      self$n <- self$n + 1
      if (self$n == 2) rlang::abort("metric exploded", class = "metric_error")
    },
    compute = function() self$n
  )
  err <- tryCatch(
    py_setup(fx, torch, metrics = list(bad_metric())) %>%
      fit(list(d$x, d$y), epochs = 1, verbose = FALSE, dataloader_options = list(batch_size = 16)),
    error = function(e) e
  )
  expect_s3_class(err, "metric_error")
  local_reproducible_output(unicode = FALSE)
  expect_equal(strsplit(conditionMessage(err), "\n")[[1]], c(
    "Error while calling callback with class <metrics_callback/LuzCallback/R6> at on_train_batch_end.",
    "Caused by error in `FUN()`:",
    "! Error when evaluating update for metric with abbrev \"Bad\" and class <LuzMetric/R6>",
    "i The error happened at iter 2 of epoch 1.",
    "i The model was in training mode.",
    "Caused by error in `metric$update()`:",
    "! metric exploded"
  ))
})

test_that("an R error in an R loss function says where it happened", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(32)
  ce <- torch$nn$CrossEntropyLoss()
  calls <- 0
  my_loss <- function(input, target) {
    calls <<- calls + 1
    if (calls == 3) stop("bad batch")
    ce(input, target)
  }
  model <- setup(fx$Net, loss = my_loss, optimizer = torch$optim$SGD) %>%
    set_hparams(n_in = 4, hidden = 8, n_out = 3) %>% set_opt_hparams(lr = 0.05)
  err <- tryCatch(
    fit(model, list(d$x, d$y), epochs = 2, verbose = FALSE, dataloader_options = list(batch_size = 16)),
    error = function(e) e
  )
  expect_s3_class(err, "simpleError")
  expect_match(conditionMessage(err), "^bad batch\nraised during training at epoch 2, iter 1")
})

test_that("errors of the engine become pyluz_error conditions naming the argument", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(32)
  model <- py_setup(fx, torch)
  err <- tryCatch(fit(model, list(d$x, d$y), epochs = 0, verbose = FALSE), error = function(e) e)
  expect_s3_class(err, "pyluz_error")
  expect_s3_class(err, "pyluz_ValueError")
  expect_match(conditionMessage(err), "`epochs`")
  expect_match(deparse(conditionCall(err)[[1]]), "^fit")
  expect_error(fit(model, list(d$x, d$y), valid_data = 1.5, verbose = FALSE), "valid_data", class = "pyluz_error")
  expect_error(fit(model, data.frame(a = 1), verbose = FALSE), "Unsupported object", class = "value_error")
  expect_error(fit(model, list(d$x, d$y), epochs = 1, verbose = FALSE, foo = 1), class = "rlib_error_dots_nonempty")
  expect_error(setup(fx$Net), "loss", class = "pyluz_error")
  expect_error(set_hparams(fx$Net, a = 1), "after `setup()`", fixed = TRUE)
  expect_error(set_hparams(model, 1), "must be named")
  # an argument reticulate can't convert is reported as such (not as the previous engine error)
  expect_error(fit(model, list(d$x, d$y), epochs = 0, verbose = FALSE), class = "pyluz_error")
  expect_error(capture.output(set_hparams(model, a = new.env())), "convert")
})

test_that("R code called from another Python thread fails cleanly instead of crashing R", {
  fx <- luz_fixtures()
  pyluz_engine()
  # no tqdm monitor thread (it would call R from a background thread when output is remapped)
  expect_equal(reticulate::import("tqdm")$tqdm$monitor_interval, 0)
  ran <- FALSE
  cb <- luz_callback("threaded", on_epoch_end = function() ran <<- TRUE)()
  adapter <- pyluz:::as_engine_callback(cb)
  msg <- fx$call_in_thread(adapter$on_epoch_end)
  expect_match(msg, "RThreadError: R code can only run on Python's main thread", fixed = TRUE)
  expect_match(msg, "threaded.on_epoch_end", fixed = TRUE)
  expect_false(ran)
  # the same callable works on the main thread
  adapter$on_epoch_end()
  expect_true(ran)
  # any R function handed to the engine is guarded
  f <- pyluz:::py_function(function(x) x + 1, "plus_one")
  expect_match(fx$call_in_thread(f, 1), "plus_one", fixed = TRUE)
  expect_equal(f(1), 2)
})

test_that("a missing or misconfigured engine gives a message saying how to set it up", {
  rscript <- file.path(R.home("bin"), "Rscript")
  code <- "tryCatch(pyluz::pyluz_engine(), error = function(e) cat(class(e)[1], conditionMessage(e)))"
  engine_message <- function(python) {
    out <- withr::with_envvar(
      c(RETICULATE_PYTHON = python, R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep)),
      system2(rscript, c("-e", shQuote(code)), stdout = TRUE, stderr = TRUE)
    )
    paste(out, collapse = "\n")
  }
  # a Python that does not exist
  out <- engine_message(file.path(tempdir(), "no-such-venv", "bin", "python"))
  expect_match(out, "^pyluz_engine_error The pyluz Python engine can't be used")
  expect_match(out, "pyluz::install_pyluz()", fixed = TRUE)
  expect_match(out, "RETICULATE_PYTHON", fixed = TRUE)
  expect_match(out, "reticulate::use_virtualenv(", fixed = TRUE)
  expect_false(grepl("make setup", out, fixed = TRUE))
  # a Python without the engine (Debian's, if there is one besides the venv)
  system_python <- "/usr/bin/python3"
  skip_if_not(file.exists(system_python) && system_python != Sys.getenv("RETICULATE_PYTHON"))
  out <- engine_message(system_python)
  skip_if(!grepl("pyluz_engine_error", out), "the system Python has the engine")
  expect_match(out, "pyluz::install_pyluz()", fixed = TRUE)
  expect_match(out, "numpy|not installed")
})

test_that("a loss constructor passed instead of a loss says how to call it", {
  skip_if_no_torch()
  net <- nn_module(initialize = function() self$fc <- nn_linear(2, 1), forward = function(x) self$fc(x))
  expect_error(setup(net, loss = nn_mse_loss, optimizer = optim_sgd),
               "`loss` is the constructor `nn_mse_loss`, not a loss: call it, e.g. `loss = nn_mse_loss()`.",
               fixed = TRUE, class = "value_error")
  expect_s3_class(setup(net, loss = nn_mse_loss(), optimizer = optim_sgd), "luz_module_generator")
})

test_that("a failed fit's condition carries the finished epochs' records and the model", {
  skip_if_no_torch()
  torch_manual_seed(1)
  x <- torch_randn(64, 3)
  y <- torch_randn(64, 1)
  net <- nn_module(initialize = function() self$fc <- nn_linear(3, 1), forward = function(x) self$fc(x))
  boom <- luz_callback("boom", on_epoch_begin = function() if (ctx$epoch == 3) stop("stop at 3"))
  e <- tryCatch(
    net %>% setup(loss = nn_mse_loss(), optimizer = optim_sgd) %>% set_opt_hparams(lr = 0.1) %>%
      fit(list(x, y), epochs = 5, callbacks = list(boom()), verbose = FALSE),
    error = function(e) e
  )
  expect_match(conditionMessage(e), "stop at 3")
  expect_length(e$records$metrics$train, 2)
  expect_true(is.numeric(e$records$metrics$train[[2]]$loss))
  expect_true(inherits(e$model, "nn_module"))
  expect_equal(dim(as_array(e$model(x))), c(64L, 1L))
})
