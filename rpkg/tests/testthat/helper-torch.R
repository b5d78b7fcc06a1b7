# Helpers for the R-torch compatibility layer tests (test-torch-*.R).

skip_if_no_torch <- function() {
  # pyluz_engine_available() loads the engine the package's way (torch first, with its own BLAS);
  # reticulate::py_module_available() would import torch behind the package's back.
  if (nzchar(Sys.getenv("PYLUZ_REQUIRE_ENGINE"))) {  # `make test`: a missing engine is a failure, not a skip
    testthat::expect_true(pyluz_engine_available(), label = "the pyluz Python package is available")
    return(invisible())
  }
  testthat::skip_if_not(
    pyluz_engine_available(),
    "the pyluz engine (torch and the pyluz Python package) is not available in the Python reticulate uses"
  )
}

# Compare a tensor with an R value.
expect_tensor_equal <- function(t, expected, tolerance = 1e-6) {
  testthat::expect_true(is_torch_tensor(t))
  testthat::expect_equal(as_array(t), expected, tolerance = tolerance, ignore_attr = TRUE)
}

# Two state dicts (named lists of tensors) with the same entries, equal bit for bit.
expect_state_dicts_equal <- function(got, expected) {
  testthat::expect_identical(names(got), names(expected))
  for (nm in names(expected)) testthat::expect_true(torch_equal(got[[nm]], expected[[nm]]), label = paste("entry", nm))
}

# Define Python functions for a test: returns an R list of the callables
# defined by `code` (executed in a fresh namespace).
py_functions <- function(code) {
  ns <- reticulate::dict(convert = TRUE)
  reticulate::import_builtins()$exec(code, ns)
  bi <- reticulate::import_builtins()
  names <- unlist(bi$list(bi$dict$keys(ns)))
  names <- setdiff(names, "__builtins__")
  out <- lapply(names, function(n) reticulate::py_to_r(reticulate::py_get_item(ns, n)))
  names(out) <- names
  out
}

# Run `code` in a new R session (this package's library paths); its stdout and stderr as one
# string, so output written by Python or C (which capture.output() misses) is seen too.
run_fresh_r <- function(code) {
  rscript <- file.path(R.home("bin"), "Rscript")
  out <- withr::with_envvar(
    c(R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep)),
    system2(rscript, c("-e", shQuote(code)), stdout = TRUE, stderr = TRUE)
  )
  paste(out, collapse = "\n")
}

# How many references to the Python object `target` the results of `n` calls of `make()` hold
# (counted against one call's, since each count also sees R garbage from the count itself), and
# how many are left once R has freed them: c(held, left).
references_held <- function(target, make, n) {
  refs <- function() reticulate::py_to_r(reticulate::import("sys", convert = FALSE)$getrefcount(target))
  count <- function(k) {
    invisible(gc())
    base <- refs()
    results <- lapply(seq_len(k), function(i) make())
    kept <- refs() - base
    rm(results)
    invisible(gc())
    c(kept, refs() - base)
  }
  one <- count(1)
  more <- count(n + 1)
  c(more[1] - one[1], more[2])
}
