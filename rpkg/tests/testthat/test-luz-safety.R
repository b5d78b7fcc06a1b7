# Values cross the bridge intact, bad values are errors naming the argument, and the R loaders
# refuse crafted files the way the engine does (they call the same engine functions).

lin_setup <- function(torch) {
  setup(torch$nn$Linear, loss = torch$nn$MSELoss(), optimizer = torch$optim$SGD)
}

# Rounds of both collectors: freeing crosses the languages several times (an R finalizer releases a
# Python object whose release lets R free an R closure that held another Python object, ...).
collect_both <- function(rounds) {
  for (i in seq_len(rounds)) {
    invisible(gc())
    reticulate::py_run_string("import gc; gc.collect()")
  }
}

# How many Python objects of class `name` are alive after `rounds` rounds of both collectors.
live_objects <- function(name, rounds = 4) {
  collect_both(rounds)
  reticulate::py_eval(sprintf("sum(1 for o in __import__('gc').get_objects() if type(o).__name__ == '%s')", name))
}

py_hparams_repr <- function(m) {
  b <- reticulate::import_builtins(convert = FALSE)
  reticulate::py_to_r(b$repr(reticulate::py_get_attr(m$py, "hparams")))
}

test_that("NA is refused where a number is expected, naming the argument", {
  torch <- py_torch()
  m <- lin_setup(torch)
  expect_error(set_opt_hparams(m, lr = NA), "`lr` of `set_opt_hparams()` is NA", fixed = TRUE,
               class = "value_error")
  expect_error(set_hparams(m, in_features = NA_real_), "`in_features` of `set_hparams()` is NA", fixed = TRUE)
})

test_that("whole numbers beyond R's integer range arrive in Python as ints", {
  torch <- py_torch()
  m <- lin_setup(torch) %>% set_hparams(in_features = 3, n = 3e9)
  expect_equal(py_hparams_repr(m), "{'in_features': 3, 'n': 3000000000}")
})

test_that("hparams whose names start like `module` are hparams, not the module", {
  torch <- py_torch()
  m <- lin_setup(torch)
  expect_equal(py_hparams_repr(m %>% set_hparams(m = 3)), "{'m': 3}")
  expect_equal(py_hparams_repr(set_hparams(m, mod = 3, in_features = 2)), "{'mod': 3, 'in_features': 2}")
  expect_equal(py_hparams_repr(set_hparams(module = m, modu = 1)), "{'modu': 1}")
  expect_s3_class(set_opt_hparams(m, mo = 0.5), "luz_module_generator")
})

test_that("metric values above 2^31 - 1 reach get_metrics() as doubles", {
  torch <- py_torch()
  reticulate::py_run_string(paste(
    "import pyluz",
    "class BigCount(pyluz.Metric):",
    "    abbrev = 'big'",
    "    def update(self, preds, target): pass",
    "    def compute(self): return 3000000007",
    sep = "\n"))
  big <- reticulate::py_eval("BigCount()", convert = FALSE)
  set.seed(1)
  x <- matrix(rnorm(64 * 3), 64, 3)
  fitted <- setup(torch$nn$Linear, loss = torch$nn$MSELoss(), optimizer = torch$optim$SGD, metrics = list(big)) %>%
    set_hparams(in_features = 3, out_features = 1) %>% set_opt_hparams(lr = 0.1) %>%
    fit(list(x, x[, 1, drop = FALSE]), epochs = 1, verbose = FALSE)
  df <- get_metrics(fitted)
  expect_equal(df$value[df$metric == "big"], 3000000007)
})

test_that("an argument reticulate can't convert is a pyluz_error, not an Rcpp::exception", {
  torch <- py_torch()
  capture.output(err <- tryCatch(set_hparams(lin_setup(torch), x = expression(1)), error = function(e) e))
  expect_s3_class(err, "pyluz_error")
  expect_false(inherits(err, "Rcpp::exception"))
  expect_match(conditionMessage(err), "Could not pass the arguments to the pyluz engine", fixed = TRUE)
})

test_that("the R loaders refuse files naming modules, FIFOs and list-DAG checkpoints", {
  torch <- py_torch()
  dir <- withr::local_tempdir()
  st <- reticulate::import("safetensors.torch")
  json <- reticulate::import("json")
  bad <- file.path(dir, "m.safetensors")
  meta <- list(format = "pyluz-fitted", format_version = 1L, module = "antigravity:X", module_kind = "class",
               hparams = reticulate::dict(), records = reticulate::dict())
  st$save_file(reticulate::dict(w = torch$zeros(1L)), bad, metadata = reticulate::dict(pyluz = json$dumps(meta)))
  err <- tryCatch(luz_load(bad), error = function(e) e)
  expect_s3_class(err, "pyluz_error")
  expect_match(conditionMessage(err), "is not imported in this process", fixed = TRUE)
  expect_false("antigravity" %in% names(reticulate::import("sys")$modules))

  set.seed(1)
  x <- matrix(rnorm(64 * 3), 64, 3)
  model <- lin_setup(torch) %>% set_hparams(in_features = 3, out_features = 1) %>% set_opt_hparams(lr = 0.1)
  fitted <- fit(model, list(x, x[, 1, drop = FALSE]), epochs = 1, verbose = FALSE)
  fifo <- file.path(dir, "fifo.pt")
  skip_if_not(identical(system2("mkfifo", fifo), 0L), "no mkfifo")
  for (load in list(function() luz_load(fifo), function() luz_load_model_weights(fitted, fifo),
                    function() luz_load_checkpoint(fitted, fifo))) {
    expect_error(load(), "not a regular file", class = "pyluz_error")
  }

  dag <- file.path(dir, "state.pt")
  reticulate::py_run_string(sprintf(paste(
    "import torch",
    "b = []",
    "for _ in range(40): b = [b, b]",
    "torch.save({'model': {}, 'epoch': 1, 'records': {'metrics': {'train': [], 'valid': []}, 'dag': b}}, %s)",
    sep = "\n"), deparse(dag)))
  expect_error(luz_load_checkpoint(fitted, dag), "damaged or crafted", class = "pyluz_error")
  expect_error(fit(model, list(x, x[, 1, drop = FALSE]), epochs = 2, verbose = FALSE,
                   callbacks = list(luz_callback_auto_resume(path = dag))), "damaged or crafted")
  expect_error(fit(model, list(x, x[, 1, drop = FALSE]), epochs = 2, verbose = FALSE,
                   callbacks = list(luz_callback_resume_from_checkpoint(path = dag, restore_records = TRUE))),
               "damaged or crafted")
})

test_that("R-defined models are freed when dropped, not when the top-level call ends", {
  skip_if_no_engine()
  net <- nn_module("SafetyLeakNet", initialize = function() self$fc <- nn_linear(3, 1),
                   forward = function(x) self$fc(x))
  live <- function() live_objects("SafetyLeakNet", rounds = 1)
  fits_in_one_call <- function(n) {
    set.seed(1)
    x <- matrix(rnorm(64 * 3), 64, 3)
    for (i in seq_len(n)) {
      fitted <- net %>% setup(loss = nn_mse_loss(), optimizer = optim_sgd) %>% set_opt_hparams(lr = 0.01) %>%
        fit(list(x, x[, 1, drop = FALSE]), epochs = 1, verbose = FALSE)
      rm(fitted)
    }
    live()   # still inside the call: before, every model stayed alive until the call returned
  }
  expect_equal(fits_in_one_call(5), 0)
})

test_that("models whose nn_module() is defined in the fitting function are freed when it returns", {
  skip_if_no_engine()
  live <- function() live_objects("SafetyInnerNet")
  x <- matrix(rnorm(32 * 3), 32, 3)
  kept <- new.env()
  # the generator's methods enclose this frame, which holds the fitted model: before, the Python
  # class held those methods, so every model fitted here outlived the call
  fit_inner <- function(keep = FALSE) {
    net <- nn_module("SafetyInnerNet", initialize = function() self$fc <- nn_linear(3, 1),
                     forward = function(x) self$fc(x))
    fitted <- net %>% setup(loss = nn_mse_loss(), optimizer = optim_sgd) %>% set_opt_hparams(lr = 0.01) %>%
      fit(list(x, x[, 1, drop = FALSE]), epochs = 1, verbose = FALSE)
    if (keep) assign(paste0("m", length(kept) + 1), fitted, envir = kept)
    invisible(NULL)
  }
  for (i in 1:3) {
    fit_inner()
    expect_equal(live(), 0, label = paste("models alive after call", i))
  }
  # the control: models kept outside the function stay alive, one more per call
  for (i in 1:3) {
    fit_inner(keep = TRUE)
    expect_equal(live(), i, label = paste("kept models after call", i))
  }
  rm(list = ls(kept), envir = kept)
  expect_equal(live(), 0)
})

test_that("a model fitted in a function with its own nn_module() works after it returns", {
  skip_if_no_engine()
  set.seed(2)
  x <- matrix(rnorm(32 * 3), 32, 3)
  y <- x[, 1, drop = FALSE]
  fit_inner <- function() {
    scale <- 2  # a free variable of the forward, found in this frame
    net <- nn_module("SafetyReturnedNet", initialize = function() self$fc <- nn_linear(3, 1),
                     forward = function(x) self$fc(x) * scale)
    net %>% setup(loss = nn_mse_loss(), optimizer = optim_sgd) %>% set_opt_hparams(lr = 0.01) %>%
      fit(list(x, y), epochs = 1, verbose = FALSE)
  }
  fitted <- fit_inner()
  collect_both(3)
  as_num <- function(t) as.numeric(t$detach()$numpy())
  pred <- as_num(predict(fitted, list(x)))
  w <- fitted$model$fc$weight$detach()$numpy()
  b <- as.numeric(fitted$model$fc$bias$detach()$numpy())
  expect_equal(pred, as.numeric(x %*% t(w) + b) * 2, tolerance = 1e-5)
  ev <- get_metrics(evaluate(fitted, list(x, y), verbose = FALSE))
  expect_equal(ev$value[ev$metric == "loss"], mean((pred - y)^2), tolerance = 1e-5)
  # its module still runs from R, and a saved copy loads and predicts the same
  expect_equal(as_num(fitted$model(torch_tensor(x[1:2, , drop = FALSE]))), pred[1:2], tolerance = 1e-5)
  path <- tempfile(fileext = ".pt")
  luz_save(fitted, path)
  expect_equal(as_num(predict(luz_load(path), list(x))), pred, tolerance = 1e-5)
  # an R reference to the module alone keeps it working
  model <- fitted$model
  reticulate::py_set_attr(reticulate::import_main(), "safety_held", fitted$py)
  rm(fitted)
  collect_both(3)
  expect_equal(as_num(model(torch_tensor(x))), pred, tolerance = 1e-5)
  # kept only by Python, the module says what was freed instead of failing obscurely
  rm(model)
  .clear_strong_refs()  # what the end of each top-level R call does: R code ran its methods
  collect_both(3)
  expect_error(reticulate::py_run_string("import torch; safety_held.model(torch.zeros(2, 3))"),
               "SafetyReturnedNet.forward was freed")
  reticulate::py_run_string("del safety_held")
})

test_that("models fitted in a function whose loss, backward or metric is defined there are freed when it returns", {
  skip_if_no_engine()
  net <- nn_module("SafetyClosureNet", initialize = function() self$fc <- nn_linear(3, 1),
                   forward = function(x) self$fc(x))
  # before the fix no number of rounds of the collectors freed these models
  live <- function() live_objects("SafetyClosureNet")
  x <- matrix(rnorm(32 * 3), 32, 3)
  # Every model stays reachable from the frame (`kept`), and the closures given to setup() hold the
  # frame: before, Python held those closures, so the frame and all its models outlived the call.
  fits_with_closures <- function(n, which) {
    loss <- function(input, target) nnf_mse_loss(input, target)
    backward <- function(loss) loss$backward()
    metric <- luz_metric(abbrev = "rows", initialize = function() self$n <- 0,
                         update = function(preds, target) self$n <- self$n + preds$size(1),
                         compute = function() self$n)
    kept <- list()
    for (i in seq_len(n)) {
      model <- switch(which,
        loss = setup(net, loss = loss, optimizer = optim_sgd),
        backward = setup(net, loss = nn_mse_loss(), optimizer = optim_sgd, backward = backward),
        metric = setup(net, loss = nn_mse_loss(), optimizer = optim_sgd, metrics = list(metric))
      )
      kept[[i]] <- model %>% set_opt_hparams(lr = 0.01) %>%
        fit(list(x, x[, 1, drop = FALSE]), epochs = 1, verbose = FALSE)
    }
    inside <- live()
    # what the fitted models need from their closures still works while they are kept
    ev <- evaluate(kept[[n]], list(x, x[, 1, drop = FALSE]), verbose = FALSE)
    expect_true(is.finite(get_metrics(ev)$value[1]))
    inside
  }
  for (which in c("loss", "backward", "metric")) {
    expect_equal(fits_with_closures(3, which), 3)
    expect_equal(live(), 0, label = paste("models alive after the call, closure:", which))
  }
  # a failed fit caught inside a function: the condition carries the model, and the frame holds both
  fails_in_a_function <- function(n) {
    loss <- function(input, target) stop("no loss today")
    errors <- lapply(seq_len(n), function(i) {
      tryCatch(fit(setup(net, loss = loss, optimizer = optim_sgd), list(x, x[, 1, drop = FALSE]),
                   epochs = 1, verbose = FALSE), error = function(e) e)
    })
    expect_match(conditionMessage(errors[[n]]), "no loss today")
    length(errors)
  }
  expect_equal(fails_in_a_function(4), 4)
  # reticulate's py_last_error() would keep the last failed fit's model: it is cleared once the
  # error became an R condition
  expect_equal(live(), 0)
})

test_that("a kept fitted model keeps its R closures; the engine object alone says they were freed", {
  skip_if_no_engine()
  x <- matrix(rnorm(32 * 2), 32, 2)
  fit_with_own_loss <- function() {
    loss <- function(input, target) nnf_mse_loss(input, target) * 2
    nn_linear %>% setup(loss = loss, optimizer = optim_sgd) %>%
      set_hparams(in_features = 2, out_features = 1) %>% set_opt_hparams(lr = 0.01) %>%
      fit(list(x, x[, 1, drop = FALSE]), epochs = 1, verbose = FALSE)
  }
  fitted <- fit_with_own_loss()
  invisible(gc())
  # the loss still runs after the frame it was defined in is gone: evaluate() is twice the MSE
  ev <- get_metrics(evaluate(fitted, list(x, x[, 1, drop = FALSE]), verbose = FALSE))
  pred <- as.numeric(predict(fitted, list(x))$detach()$numpy())
  expect_equal(ev$value[ev$metric == "loss"], 2 * mean((pred - x[, 1])^2), tolerance = 1e-5)
  # only the R objects keep the closures: the engine object without them says so
  py <- fitted$py
  rm(fitted)
  invisible(gc())
  expect_error(engine_call(py$evaluate, list(x, x[, 1, drop = FALSE]), verbose = FALSE),
               "freed with the R objects holding it")
})

test_that("memory stays flat over 50 fits inside one function; 10 kept models show up", {
  skip_if_no_engine()
  rss_mib <- function() {
    invisible(gc())
    # malloc_trim: freed heap goes back to the OS, so RSS counts live memory (else earlier tests'
    # freed memory is reused and the control can't grow)
    reticulate::py_run_string("import gc, ctypes; gc.collect(); ctypes.CDLL('libc.so.6').malloc_trim(0)")
    as.numeric(strsplit(readLines("/proc/self/statm"), " ")[[1]][2]) * 4096 / 2^20
  }
  skip_if_not(file.exists("/proc/self/statm"), "no /proc/self/statm")
  # a 1024 x 1024 linear layer: 4 MiB of weights per fitted model
  net <- nn_module("SafetyRssNet", initialize = function() self$fc <- nn_linear(1024, 1024),
                   forward = function(x) self$fc(x))
  fits_in_one_call <- function(n, keep = 0) {
    set.seed(1)
    x <- matrix(rnorm(64 * 1024), 64)
    kept <- list()
    sizes <- numeric(n)
    for (i in seq_len(n)) {
      fitted <- net %>% setup(loss = nn_mse_loss(), optimizer = optim_sgd) %>% set_opt_hparams(lr = 0.01) %>%
        fit(list(x, x), epochs = 1, verbose = FALSE, dataloader_options = list(batch_size = 64))
      if (i <= keep) kept[[i]] <- fitted
      rm(fitted)
      sizes[i] <- rss_mib()
    }
    sizes
  }
  sizes <- fits_in_one_call(50)
  expect_lt(sizes[50] - sizes[10], 15)   # measured: 553.9 -> 546.1 MiB
  kept <- fits_in_one_call(20, keep = 10)
  expect_gt(kept[20] - sizes[50], 25)    # the control: measured +40 MiB for 10 kept models
})
