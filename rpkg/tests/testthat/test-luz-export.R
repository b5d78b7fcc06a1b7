# A model defined in R (nn_module) is saved with a program that runs its forward pass without R:
# a separate Python process with no R in it loads the file and predicts the same values.

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
  luz_save(fitted, path)
  meta <- reticulate::import("pyluz.serialization")$read_metadata(path)
  expect_equal(meta$defined_in, "R")
  expect_equal(meta$program[c("file", "format", "batch")],
               list(file = "model.safetensors.pt2", format = "torch.export", batch = "dynamic"))
  expect_true(file.exists(file.path(dir, "model.safetensors.pt2")))

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
