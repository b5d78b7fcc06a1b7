# Shared by the test-luz-*.R files: the Python fixtures (a teammate's module, the Python side of
# the parity test) and a skip when the engine can't be used.

skip_if_no_engine <- function() {
  if (nzchar(Sys.getenv("PYLUZ_REQUIRE_ENGINE"))) {  # `make test`: a missing engine is a failure, not a skip
    testthat::expect_true(pyluz::pyluz_engine_available(), label = "the pyluz Python engine is available")
    return(invisible())
  }
  testthat::skip_if_not(pyluz::pyluz_engine_available(), "the pyluz Python engine is not available")
}

luz_fixtures <- function() {
  skip_if_no_engine()
  reticulate::import_from_path("luz_fixtures", path = testthat::test_path("python"))
}

py_torch <- function() {
  skip_if_no_engine()
  reticulate::import("torch")
}

# Small classification data: 4 features, 3 classes (0-based for Python losses).
make_class_data <- function(n = 96, seed = 1) {
  set.seed(seed)
  x <- matrix(rnorm(n * 4), n, 4)
  score <- cbind(x[, 1] + x[, 2], x[, 3] - x[, 1], -x[, 2] - x[, 4])
  y <- max.col(score) - 1L
  list(x = x, y = y)
}
