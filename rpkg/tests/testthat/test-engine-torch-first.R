# torch imported before the engine binds its matrix products to R's BLAS: pyluz says so, once.

test_that("importing torch before the engine warns once with what to do", {
  skip_if_no_torch()
  out <- run_fresh_r(paste(
    "library(pyluz)",
    "invisible(reticulate::import('torch'))",
    "n <- 0",
    "withCallingHandlers({ pyluz_engine(); x <- torch_randn(2, 2); nn_linear(2, 2) },",
    "  warning = function(w) { n <<- n + 1; cat('WARNING:', conditionMessage(w), '\\n'); invokeRestart('muffleWarning') })",
    "cat('warnings:', n, '\\n')",
    sep = "\n"
  ))
  expect_match(out, "warnings: 1", fixed = TRUE)
  expect_match(out, "torch was imported before pyluz", fixed = TRUE)
  expect_match(out, "pyluz_engine()", fixed = TRUE)
})

test_that("no warning when the engine imports torch itself", {
  skip_if_no_torch()
  out <- run_fresh_r(paste(
    "library(pyluz)",
    "n <- 0",
    "withCallingHandlers({ x <- torch_randn(2, 2); invisible(reticulate::import('torch')); pyluz_engine() },",
    "  warning = function(w) { n <<- n + 1; invokeRestart('muffleWarning') })",
    "cat('warnings:', n, '\\n')",
    sep = "\n"
  ))
  expect_match(out, "warnings: 0", fixed = TRUE)
})

test_that("the torch_is_installed() guard of examples loads torch the package's way", {
  skip_if_no_torch()
  out <- run_fresh_r(paste(
    "library(pyluz)",
    "n <- 0",
    "withCallingHandlers({ stopifnot(torch_is_installed()); x <- torch_randn(2, 2) },",
    "  warning = function(w) { n <<- n + 1; invokeRestart('muffleWarning') })",
    "cat('warnings:', n, '\\n')",
    sep = "\n"
  ))
  expect_match(out, "warnings: 0", fixed = TRUE)
})
