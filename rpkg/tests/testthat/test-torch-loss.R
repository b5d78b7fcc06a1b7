manual_ce <- function(logits, target) {
  lse <- log(rowSums(exp(logits)))
  mean(lse - logits[cbind(seq_along(target), target)])
}

test_that("cross-entropy takes 1-based class targets", {
  skip_if_no_torch()
  set.seed(3)
  logits <- matrix(rnorm(15), 5, 3)
  target <- c(1L, 3L, 2L, 3L, 1L)
  expected <- manual_ce(logits, target)
  x <- torch_tensor(logits)
  y <- torch_tensor(target)
  expect_equal(nn_cross_entropy_loss()(x, y)$item(), expected, tolerance = 1e-5)
  expect_equal(nnf_cross_entropy(x, y)$item(), expected, tolerance = 1e-5)
  # doubles as class indices work too
  expect_equal(nnf_cross_entropy(x, torch_tensor(as.numeric(target)))$item(), expected, tolerance = 1e-5)
  # reduction = "none" keeps the R loss attribute
  loss <- nn_cross_entropy_loss(reduction = "none")
  expect_equal(loss$reduction, "none")
  expect_equal(loss(x, y)$shape, 5L)
  # NLL on log-probabilities gives the same value
  lp <- nnf_log_softmax(x, dim = 2)
  expect_equal(nnf_nll_loss(lp, y)$item(), expected, tolerance = 1e-5)
  expect_equal(nn_nll_loss()(lp, y)$item(), expected, tolerance = 1e-5)
  # class 0 is an error, class C+1 too
  expect_error(nn_cross_entropy_loss()(x, torch_tensor(c(0L, 1L, 1L, 1L, 1L))), "1-based")
  expect_error(nnf_cross_entropy(x, torch_tensor(c(4L, 1L, 1L, 1L, 1L))))
})

test_that("ignore_index is a 1-based class and -100 ignores", {
  skip_if_no_torch()
  set.seed(4)
  logits <- matrix(rnorm(12), 4, 3)
  target <- c(1L, 2L, 3L, 2L)
  x <- torch_tensor(logits)
  keep <- target != 2L
  expected <- manual_ce(logits[keep, , drop = FALSE], target[keep])
  expect_equal(nnf_cross_entropy(x, torch_tensor(target), ignore_index = 2)$item(), expected, tolerance = 1e-5)
  t2 <- target
  t2[!keep] <- -100L
  expect_equal(nn_cross_entropy_loss()(x, torch_tensor(t2))$item(), expected, tolerance = 1e-5)
})

test_that("other losses and functional ops", {
  skip_if_no_torch()
  a <- c(0.2, 0.7, 0.9)
  b <- c(0, 1, 1)
  x <- torch_tensor(a)
  y <- torch_tensor(b)
  expect_equal(nn_mse_loss()(x, y)$item(), mean((a - b)^2), tolerance = 1e-6)
  expect_equal(nnf_mse_loss(x, y)$item(), mean((a - b)^2), tolerance = 1e-6)
  expect_equal(nn_l1_loss()(x, y)$item(), mean(abs(a - b)), tolerance = 1e-6)
  bce <- -mean(b * log(a) + (1 - b) * log(1 - a))
  expect_equal(nn_bce_loss()(x, y)$item(), bce, tolerance = 1e-5)
  expect_equal(nnf_binary_cross_entropy(x, y)$item(), bce, tolerance = 1e-5)
  expect_equal(nn_bce_loss()(x, torch_tensor(c(0L, 1L, 1L)))$item(), bce, tolerance = 1e-5)
  z <- log(a / (1 - a))
  expect_equal(nn_bce_with_logits_loss()(torch_tensor(z), y)$item(), bce, tolerance = 1e-5)
  expect_equal(nnf_binary_cross_entropy_with_logits(torch_tensor(z), y)$item(), bce, tolerance = 1e-5)
  expect_gt(nn_smooth_l1_loss()(x, y)$item(), 0)
  expect_gte(nn_triplet_margin_loss()(torch_randn(4, 3), torch_randn(4, 3), torch_randn(4, 3))$item(), 0)
  oh <- nnf_one_hot(torch_tensor(c(1L, 3L)), num_classes = 3)
  expect_equal(as_array(oh), rbind(c(1L, 0L, 0L), c(0L, 0L, 1L)))
  m <- matrix(c(-1, 2, 3, -4), 2)
  expect_equal(as_array(nnf_relu(torch_tensor(m))), pmax(m, 0))
  expect_equal(as_array(nnf_softmax(torch_tensor(m), dim = 1)), apply(m, 2, function(v) exp(v) / sum(exp(v))),
               tolerance = 1e-6)
  expect_equal(as_array(nnf_sigmoid(torch_tensor(0))), 0.5)
  expect_equal(nnf_max_pool2d(torch_randn(1, 1, 4, 4), 2)$shape, c(1L, 1L, 2L, 2L))
  expect_equal(nnf_avg_pool2d(torch_ones(1, 1, 4, 4), kernel_size = 2)$shape, c(1L, 1L, 2L, 2L))
  expect_equal(nnf_pad(torch_ones(2, 2), c(1, 1))$shape, c(2L, 4L))
  expect_equal(as_array(nnf_dropout(torch_ones(3), training = FALSE)), c(1, 1, 1))
  expect_equal(nnf_gelu(torch_tensor(0))$item(), 0)
})

test_that("loss functions passed to Python run without R", {
  skip_if_no_torch()
  f <- reticulate::r_to_py(nnf_cross_entropy)
  expect_match(reticulate::py_repr(f), "nnf_cross_entropy")
  x <- torch_tensor(rbind(c(2, 0), c(0, 2)))
  y <- torch_tensor(c(1L, 2L))
  expect_equal(f(x, y)$item(), nnf_cross_entropy(x, y)$item(), tolerance = 1e-6)
  py <- py_functions("def call(f, a, b):\n    return float(f(a, b))")
  expect_equal(py$call(nnf_mse_loss, torch_zeros(2), torch_ones(2)), 1)
  expect_equal(py$call(nn_mse_loss(), torch_zeros(2), torch_ones(2)), 1)
})
