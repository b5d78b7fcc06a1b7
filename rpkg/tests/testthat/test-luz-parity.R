# The same Python-defined module, data and seed give the same records whether trained from R
# (through the pipe API) or from Python; a model trained from R loads in a separate Python process.

test_that("training from R and from Python gives the same records (Python loss and optimizer)", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(120, seed = 7)
  torch$manual_seed(42)
  set.seed(3)  # the held-out rows: R's sample.int(), as in luz
  fitted <- setup(fx$Net, loss = torch$nn$CrossEntropyLoss(), optimizer = torch$optim$Adam,
                  metrics = list(reticulate::import("pyluz.metrics")$Accuracy())) %>%
    set_hparams(n_in = 4, hidden = 16, n_out = 3) %>%
    set_opt_hparams(lr = 0.01) %>%
    fit(list(d$x, d$y), epochs = 3, valid_data = 0.25, verbose = FALSE,
        dataloader_options = list(batch_size = 16))
  set.seed(3)
  py <- fx$train_python(d$x, d$y, seed = 42, epochs = 3, lr = 0.01, batch_size = 16, valid = 0.25,
                        valid_rows = sample.int(120, 30) - 1L)
  expect_equal(fitted$records$metrics, py$records, tolerance = 1e-5)
  expect_equal(as_array(fitted$model$fc1$weight), py$weight, tolerance = 1e-5, ignore_attr = TRUE)
})

test_that("R conventions (1-based targets, nn_cross_entropy_loss, optim_adam, luz_metric_accuracy) match Python", {
  fx <- luz_fixtures()
  d <- make_class_data(120, seed = 8)
  torch_manual_seed(42)
  set.seed(3)
  fitted <- fx$Net %>%
    setup(loss = nn_cross_entropy_loss(), optimizer = optim_adam, metrics = list(luz_metric_accuracy())) %>%
    set_hparams(n_in = 4, hidden = 16, n_out = 3) %>%
    set_opt_hparams(lr = 0.01) %>%
    fit(list(d$x, d$y + 1L), epochs = 3, valid_data = 0.25, verbose = FALSE,
        dataloader_options = list(batch_size = 16))
  set.seed(3)
  py <- fx$train_python(d$x, d$y, seed = 42, epochs = 3, lr = 0.01, batch_size = 16, valid = 0.25,
                        valid_rows = sample.int(120, 30) - 1L)
  expect_equal(fitted$records$metrics, py$records, tolerance = 1e-5)
  df <- get_metrics(fitted)
  expect_equal(df$value[df$set == "valid" & df$metric == "acc"],
               vapply(py$records$valid, function(r) r$acc, 1), tolerance = 1e-5)
})

test_that("a model trained from R with a Python module loads with pyluz.load in Python", {
  fx <- luz_fixtures()
  torch <- py_torch()
  d <- make_class_data(60, seed = 9)
  torch$manual_seed(1)
  fitted <- setup(fx$Net, loss = torch$nn$CrossEntropyLoss(), optimizer = torch$optim$Adam) %>%
    set_hparams(n_in = 4, hidden = 12, n_out = 3) %>%
    set_opt_hparams(lr = 0.01) %>%
    fit(list(d$x, d$y), epochs = 2, valid_data = 0.2, verbose = FALSE)
  dir <- withr::local_tempdir()
  path <- file.path(dir, "model.safetensors")
  expect_identical(luz_save(fitted, path), fitted)
  r_preds <- as_array(predict(fitted, d$x))

  # a separate Python process: pyluz.load(path), predict
  x_path <- file.path(dir, "x.csv")
  out_path <- file.path(dir, "preds.csv")
  utils::write.table(format(d$x, digits = 17), x_path, sep = ",", row.names = FALSE, col.names = FALSE,
                     quote = FALSE)
  script <- normalizePath(testthat::test_path("python", "load_and_predict.py"))
  out <- withr::with_envvar(
    c(PYTHONPATH = normalizePath(testthat::test_path("python"))),
    system2(reticulate::py_exe(), c(shQuote(script), shQuote(path), shQuote(x_path), shQuote(out_path)),
            stdout = TRUE, stderr = TRUE)
  )
  expect_equal(attr(out, "status"), NULL, info = paste(out, collapse = "\n"))
  expect_equal(tail(out, 1), "luz_fixtures.Net")
  py_preds <- as.matrix(utils::read.csv(out_path, header = FALSE))
  expect_equal(py_preds, r_preds, tolerance = 1e-6, ignore_attr = TRUE)

  # and back in R
  again <- luz_load(path)
  expect_s3_class(again, "luz_module_fitted")
  expect_equal(again$records, fitted$records, tolerance = 1e-12)
  expect_equal(again$ctx$hparams, fitted$ctx$hparams)
  expect_equal(as_array(predict(again, d$x)), r_preds, tolerance = 1e-6)
  ev <- evaluate(luz_load(path, loss = torch$nn$CrossEntropyLoss()), list(d$x, d$y))
  expect_equal(get_metrics(ev)$metric, "loss")

  # weights only
  wpath <- file.path(dir, "weights.safetensors")
  luz_save_model_weights(fitted, wpath)
  torch$manual_seed(2)
  other <- setup(fx$Net, loss = torch$nn$CrossEntropyLoss(), optimizer = torch$optim$Adam) %>%
    set_hparams(n_in = 4, hidden = 12, n_out = 3) %>%
    fit(list(d$x, d$y), epochs = 1, verbose = FALSE)
  expect_false(isTRUE(all.equal(as_array(predict(other, d$x)), r_preds, tolerance = 1e-6)))
  expect_null(luz_load_model_weights(other, wpath))
  expect_equal(as_array(predict(other, d$x)), r_preds, tolerance = 1e-6)
  expect_error(luz_save(list(), path), "fitted model")
})

test_that("models defined in R are saved too and load with `module =`", {
  skip_if_no_engine()
  net <- nn_module("saved_mlp",
                   initialize = function(hidden) {
                     self$fc1 <- nn_linear(4, hidden)
                     self$fc2 <- nn_linear(hidden, 3)
                   },
                   forward = function(x) x %>% self$fc1() %>% nnf_relu() %>% self$fc2())
  d <- make_class_data(50)
  fitted <- net %>% setup(loss = nn_cross_entropy_loss(), optimizer = optim_adam) %>%
    set_hparams(hidden = 5) %>% fit(list(d$x, d$y + 1L), epochs = 1, verbose = FALSE)
  path <- withr::local_tempfile(fileext = ".safetensors")
  luz_save(fitted, path)
  # the file holds the R definition (as luz's RDS files): luz_load() rebuilds it without `module`
  expect_equal(as_array(predict(luz_load(path), d$x)), as_array(predict(fitted, d$x)), tolerance = 1e-6)
  again <- luz_load(path, module = net)
  expect_equal(again$ctx$hparams, list(hidden = 5L))
  expect_equal(as_array(predict(again, d$x)), as_array(predict(fitted, d$x)), tolerance = 1e-6)
})
