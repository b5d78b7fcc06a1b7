# print()/str() in R torch's layout (libtorch's printer, 1-based slice indices).

test_that("tensors print as R torch prints them", {
  skip_if_no_torch()
  x <- torch_tensor(matrix(c(0.5, -1.25, 2, 3.125, 4, 0), nrow = 2))
  expect_equal(capture.output(print(x)), c(
    "torch_tensor",
    " 0.5000  2.0000  4.0000",
    "-1.2500  3.1250  0.0000",
    "[ CPUFloatType{2,3} ]"))
  expect_equal(capture.output(print(torch_tensor(1:3))),
               c("torch_tensor", " 1", " 2", " 3", "[ CPULongType{3} ]"))
  expect_equal(capture.output(print(torch_tensor(2.5))), c("torch_tensor", " 2.5000", "[ CPUFloatType{1} ]"))
  expect_equal(capture.output(print(torch_tensor(c(1e-5, 2e-5)))),
               c("torch_tensor", "1e-05 *", " 1.0000", " 2.0000", "[ CPUFloatType{2} ]"))
  expect_equal(capture.output(print(torch_ones(2, 1, 2, dtype = torch_long()))), c(
    "torch_tensor", "(1,.,.) = ", "  1  1", "", "(2,.,.) = ", "  1  1", "[ CPULongType{2,1,2} ]"))
  y <- torch_ones(2, requires_grad = TRUE)
  expect_equal(capture.output(print(y))[4], "[ CPUFloatType{2} ][ requires_grad = TRUE ]")
  expect_equal(capture.output(print(y$sum())),
               c("torch_tensor", "2", "[ CPUFloatType{} ][ grad_fn = <SumBackward0> ]"))
  expect_output(print(torch_ones(40)), "output was truncated")
  expect_equal(capture.output(str(torch_zeros(2, 3))), "Float [1:2, 1:3]")
  expect_equal(capture.output(str(torch_tensor(TRUE))), "Bool [1:1]")
})

test_that("modules print their parameter counts, submodules, parameters and buffers", {
  skip_if_no_torch()
  local_reproducible_output(unicode = TRUE)
  Net <- nn_module("Net", initialize = function() {
    self$fc1 <- nn_linear(10, 50)
    self$fc2 <- nn_linear(50, 1)
  }, forward = function(x) self$fc2(self$fc1(x)))
  out <- capture.output(print(Net()))
  expect_equal(out[1], "An `nn_module` containing 601 parameters.")
  expect_match(out[3], "^── Modules ─+$")
  expect_equal(out[4:5], c("• fc1: <nn_linear> #550 parameters", "• fc2: <nn_linear> #51 parameters"))
  out <- capture.output(print(nn_batch_norm1d(3)))
  expect_equal(out[1], "An `nn_module` containing 6 parameters.")
  expect_true(all(c("• weight: Float [1:3]", "• running_mean: Float [1:3]",
                    "• num_batches_tracked: Long []") %in% out))
  expect_match(out[grep("Buffers", out)], "^── Buffers ─+$")
})

test_that("devices print as torch_device(type='cpu')", {
  skip_if_no_torch()
  expect_equal(capture.output(print(torch_device("cpu"))), "torch_device(type='cpu') ")
  expect_equal(capture.output(print(torch_float())), "torch_Float")
})
