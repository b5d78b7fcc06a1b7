# R torch's class vectors on every Python object that reaches R.

test_that("tensors are torch_tensors however they reach R", {
  skip_if_no_torch()
  x <- torch_randn(2, 3)
  expect_equal(class(x)[1], "torch_tensor")
  expect_true(inherits(x$sum(), "torch_tensor"))             # `$` method result
  expect_true(inherits(x + 1, "torch_tensor"))               # operator
  expect_true(inherits(torch_mean(x, dim = 1), "torch_tensor"))
  parts <- torch_max(x, dim = 2)                              # list elements
  expect_true(all(vapply(parts, inherits, logical(1), "torch_tensor")))
  seen <- NULL
  f <- reticulate::py_run_string("def call(cb, t):\n  return cb(t * 2)\n", convert = FALSE)$call
  f(function(t) {                                             # argument of an R callback
    seen <<- class(t)
    NULL
  }, x)
  expect_equal(seen[1], "torch_tensor")
  p <- nn_linear(2, 3)$weight
  expect_equal(class(p)[1:2], c("nn_parameter", "torch_tensor"))
  expect_true(is_torch_tensor(p))
})

test_that("modules, optimizers, datasets, dataloaders, devices and dtypes carry R torch's classes", {
  skip_if_no_torch()
  expect_equal(class(nn_linear(2, 3))[1:2], c("nn_linear", "nn_module"))
  expect_equal(class(nn_batch_norm1d(3))[1], "nn_batch_norm1d")
  expect_equal(class(nn_leaky_relu())[1], "nn_leaky_relu")
  expect_equal(class(nn_cross_entropy_loss())[1:2], c("nn_cross_entropy_loss", "nn_module"))
  expect_equal(class(nn_bce_with_logits_loss())[1], "nn_bce_with_logits_loss")
  expect_equal(class(nn_sequential(nn_relu()))[1], "nn_sequential")
  Net <- nn_module("Net", inherit = nn_linear)
  expect_equal(class(Net(2, 2))[1:3], c("Net", "nn_linear", "nn_module"))
  Child <- nn_module("Child", inherit = Net)
  expect_equal(class(Child(2, 2))[1:4], c("Child", "Net", "nn_linear", "nn_module"))
  Plain <- nn_module(initialize = function() NULL, forward = function(x) x)
  expect_equal(class(Plain())[1], "nn_module")
  opt <- optim_adam(nn_linear(2, 1)$parameters)
  expect_equal(class(opt)[1:2], c("optim_adam", "torch_optimizer"))
  ds <- tensor_dataset(torch_randn(4, 2))
  expect_equal(class(ds)[1], "dataset")
  expect_equal(class(dataloader(ds, batch_size = 2))[1], "dataloader")
  MyData <- dataset("MyData", .getitem = function(i) i, .length = function() 3)
  expect_equal(class(MyData())[1:2], c("MyData", "dataset"))
  expect_equal(class(torch_device("cpu"))[1], "torch_device")
  expect_equal(class(torch_float())[1], "torch_dtype")
})

test_that("S3 methods written for R torch classes dispatch on our objects", {
  skip_if_no_torch()
  describe <- function(x) UseMethod("describe")
  describe.torch_tensor <- function(x) "a tensor"
  describe.nn_module <- function(x) "a module"
  expect_equal(describe(torch_ones(1)), "a tensor")
  expect_equal(describe(nn_relu()), "a module")
})
