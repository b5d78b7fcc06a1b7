# A model defined in R (nn_module) is saved, in one file, with a program that runs its forward pass
# without R: a separate Python process with no R in it loads the file and predicts the same values.

test_that("an nn_module trained and saved from R predicts in Python without R", {
  skip_if_no_engine()
  net <- nn_module("exported_mlp",
                   initialize = function(hidden) {
                     self$fc1 <- nn_linear(4, hidden)
                     self$fc2 <- nn_linear(hidden, 3)
                   },
                   forward = function(x) {
                     n <- x$size(1)  # a shape read in R stays symbolic in the exported program
                     x %>% self$fc1() %>% nnf_relu() %>% self$fc2() %>% torch_reshape(c(n, -1))
                   })
  d <- make_class_data(70, seed = 11)
  torch_manual_seed(3)
  fitted <- net %>% setup(loss = nn_cross_entropy_loss(), optimizer = optim_adam) %>%
    set_hparams(hidden = 7) %>%
    fit(list(d$x, d$y + 1L), epochs = 2, verbose = FALSE, dataloader_options = list(batch_size = 16))
  dir <- withr::local_tempdir()
  path <- file.path(dir, "model.safetensors")
  expect_silent(luz_save(fitted, path))  # no graph dumps, warnings or messages
  expect_equal(list.files(dir), "model.safetensors")  # one file: the program is inside
  meta <- reticulate::import("pyluz.serialization")$read_metadata(path)
  expect_equal(meta$defined_in, "R")
  expect_equal(meta$program[c("key", "format", "batch")],
               list(key = ".pyluz.program", format = "torch.export", batch = "dynamic"))
  expect_message(luz_save(fitted, path, verbose = TRUE), "with a torch.export program")
  expect_error(luz_save(fitted, path, verbose = "yes"), "`verbose` must be")

  new_x <- make_class_data(33, seed = 12)$x
  r_preds <- as_array(predict(fitted, new_x))

  # A plain Python process (not reticulate): pyluz.load(path, trust_program=True), predict.
  x_path <- file.path(dir, "x.csv")
  out_path <- file.path(dir, "preds.csv")
  utils::write.table(format(new_x, digits = 17), x_path, sep = ",", row.names = FALSE, col.names = FALSE,
                     quote = FALSE)
  script <- file.path(dir, "predict.py")
  writeLines(c(
    "import sys",
    "import numpy as np, torch, pyluz",
    "model_path, x_path, out_path = sys.argv[1:4]",
    "fitted = pyluz.load(model_path, trust_program=True)",
    "x = torch.tensor(np.loadtxt(x_path, delimiter=',', ndmin=2), dtype=torch.float32)",
    "np.savetxt(out_path, fitted.predict(x, verbose=False).numpy().astype('float64'), delimiter=',', fmt='%.10g')",
    "print(type(fitted.model).__name__, any(m in sys.modules for m in ('rpy2', 'rpytools')))"
  ), script)
  out <- system2(reticulate::py_exe(), shQuote(c(script, path, x_path, out_path)), stdout = TRUE, stderr = TRUE)
  expect_equal(attr(out, "status"), NULL, info = paste(out, collapse = "\n"))
  expect_equal(tail(out, 1), "ProgramModule False")
  py_preds <- as.matrix(utils::read.csv(out_path, header = FALSE))
  expect_equal(py_preds, r_preds, tolerance = 1e-6, ignore_attr = TRUE)

  # From R the file's R definition rebuilds the model; the program is used only when trusted.
  expect_equal(as_array(predict(luz_load(path), new_x)), r_preds, tolerance = 1e-6)
  expect_error(luz_load(path, trust_program = "yes"), "`trust_program` must be")
  again <- luz_load(path, trust_program = TRUE)
  expect_equal(as_array(predict(again, new_x)), r_preds, tolerance = 1e-6)
  expect_equal(again$records, fitted$records, tolerance = 1e-12)
  expect_equal(as_array(predict(luz_load(path, module = net), new_x)), r_preds, tolerance = 1e-6)
})

test_that("a model whose forward can't be captured is saved silently; verbose = TRUE says why", {
  skip_if_no_engine()
  net <- nn_module("leaves_torch", initialize = function() self$fc <- nn_linear(4, 1),
                   forward = function(x) self$fc(x) + sum(as_array(x)))  # an R array: no program sees it
  d <- make_class_data(40, seed = 2)
  fitted <- net %>% setup(loss = nn_mse_loss(), optimizer = optim_sgd) %>% set_opt_hparams(lr = 0.01) %>%
    fit(list(d$x, d$x[, 1, drop = FALSE]), epochs = 1, verbose = FALSE)
  path <- withr::local_tempfile(fileext = ".safetensors")
  expect_silent(luz_save(fitted, path))
  meta <- reticulate::import("pyluz.serialization")$read_metadata(path)
  expect_null(meta$program)
  expect_match(meta$program_error, "torch.export:.*other outputs")
  expect_message(luz_save(fitted, path, verbose = TRUE), "without a program.*could not be exported")
  expect_equal(as_array(predict(luz_load(path), d$x)), as_array(predict(fitted, d$x)), tolerance = 1e-6)
})

test_that("luz_load() in a fresh R session predicts and evaluates; Python never runs the stored R code", {
  skip_if_no_engine()
  dir <- withr::local_tempdir()
  path <- file.path(dir, "model.safetensors")
  marker <- file.path(dir, "r-code-ran")
  # initialize() leaves a marker file: proof that the stored R definition ran
  net <- nn_module("marker_net",
                   initialize = function(marker) {
                     file.create(marker)
                     self$fc <- nn_linear(4, 3)
                   },
                   forward = function(x) self$fc(x))
  d <- make_class_data(60, seed = 5)
  torch_manual_seed(1)
  fitted <- net %>%
    setup(loss = nn_cross_entropy_loss(), optimizer = optim_adam, metrics = list(luz_metric_accuracy())) %>%
    set_hparams(marker = marker) %>%
    fit(list(d$x, d$y + 1L), epochs = 2, verbose = FALSE)
  luz_save(fitted, path)
  expected <- list(preds = as_array(predict(fitted, d$x)), eval = get_metrics(evaluate(fitted, list(d$x, d$y + 1L))))
  unlink(marker)

  # Python: the program runs (trust_program=True); the R definition in the file never does.
  script <- file.path(dir, "load.py")
  writeLines(c(
    "import sys, torch, pyluz",
    "fitted = pyluz.load(sys.argv[1], trust_program=True)",
    "print(tuple(fitted.predict(torch.randn(5, 4), verbose=False).shape))"
  ), script)
  out <- system2(reticulate::py_exe(), shQuote(c(script, path)), stdout = TRUE, stderr = TRUE)
  expect_equal(tail(out, 1), "(5, 3)", info = paste(out, collapse = "\n"))
  expect_false(file.exists(marker))

  # A fresh R session: the stored R definition rebuilds the model (and runs, as readRDS would).
  saveRDS(list(x = d$x, y = d$y + 1L), file.path(dir, "data.rds"))
  code <- sprintf(paste(
    "suppressPackageStartupMessages(library(pyluz))",
    "d <- readRDS('%s')",
    "fitted <- luz_load('%s')",
    "saveRDS(list(preds = as_array(predict(fitted, d$x)), eval = get_metrics(evaluate(fitted, list(d$x, d$y)))),",
    "        '%s')",
    sep = "\n"
  ), file.path(dir, "data.rds"), path, file.path(dir, "out.rds"))
  out <- withr::with_envvar(
    c(R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep)),
    system2(file.path(R.home("bin"), "Rscript"), c("-e", shQuote(code)), stdout = TRUE, stderr = TRUE)
  )
  expect_true(file.exists(file.path(dir, "out.rds")), info = paste(out, collapse = "\n"))
  got <- readRDS(file.path(dir, "out.rds"))
  expect_equal(got$preds, expected$preds, tolerance = 1e-6)
  expect_equal(got$eval$metric, c("loss", "acc"))
  expect_equal(got$eval, expected$eval, tolerance = 1e-6)
  expect_true(file.exists(marker))
})
