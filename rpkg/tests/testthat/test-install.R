# install_pyluz()'s decisions, the engine that ships inside the package, and the version check.
# (The whole install, from the built tarball into a new environment, runs in `make test-install`.)

pins <- c("torch==2.13.0", "numpy<2", "pandas>=2,<3", "rpy2==3.5.17")
version <- as.character(utils::packageVersion("pyluz"))
installed <- function(pyluz = NA, torch = NA, numpy = NA) {
  c(pyluz = as.character(pyluz), torch = as.character(torch), numpy = as.character(numpy))
}

test_that("a new environment gets the tested torch, numpy<2 for reticulate < 1.38, and the other pins", {
  plan <- pyluz:::install_plan(installed(), NULL, numeric_version("1.28"), pins)
  expect_equal(plan$packages, c("torch==2.13.0", "numpy<2"))
  expect_equal(plan$constraints, c("pandas>=2,<3", "rpy2==3.5.17"))
  plan <- pyluz:::install_plan(installed(), "torch==2.5.1", numeric_version("1.38.0"), pins)
  expect_equal(plan$packages, "torch==2.5.1")
})

test_that("a complete environment needs nothing; a stale engine, numpy 2 or another torch pin do", {
  complete <- installed(version, "2.13.0+cpu", "1.26.4")
  expect_null(pyluz:::install_plan(complete, NULL, numeric_version("1.28"), pins))
  expect_null(pyluz:::install_plan(complete, "torch==2.13.0", numeric_version("1.28"), pins))
  # an engine of another version: reinstall it, keep the torch that is there
  plan <- pyluz:::install_plan(installed("0.0.1", "2.13.0+cpu", "1.26.4"), NULL, numeric_version("1.28"), pins)
  expect_equal(plan$packages, "numpy<2")
  # numpy 2 is fine only from reticulate 1.38 on
  numpy2 <- installed(version, "2.13.0", "2.1.0")
  expect_equal(pyluz:::install_plan(numpy2, NULL, numeric_version("1.28"), pins)$packages, "numpy<2")
  expect_null(pyluz:::install_plan(numpy2, NULL, numeric_version("1.38.0"), pins))
  expect_equal(pyluz:::install_plan(complete, "torch==2.5.1", numeric_version("1.28"), pins)$packages,
               c("torch==2.5.1", "numpy<2"))
})

test_that("install_pyluz() reports what changed and what the next step is", {
  expect_equal(
    pyluz:::describe_changes(installed(NA, "2.13.0", "2.1.0"), installed(version, "2.13.0", "1.26.4")),
    sprintf("pyluz %s (was not installed), torch 2.13.0 (unchanged), numpy 1.26.4 (was 2.1.0)", version)
  )
  expect_equal(pyluz:::describe_versions(installed(version, NA, "1.26.4")),
               sprintf("pyluz %s, torch none, numpy 1.26.4", version))
  withr::with_envvar(c(RETICULATE_PYTHON = NA), {
    expect_match(pyluz:::next_step_message("r-pyluz", "/envs/r-pyluz/bin/python"), "^library\\(pyluz\\) finds")
    expect_match(pyluz:::next_step_message("mine", "/envs/mine/bin/python"),
                 "reticulate::use_virtualenv(\"mine\", required = TRUE)", fixed = TRUE)
  })
  withr::with_envvar(c(RETICULATE_PYTHON = "/elsewhere/bin/python"), {
    expect_match(pyluz:::next_step_message("r-pyluz", "/envs/r-pyluz/bin/python"),
                 "RETICULATE_PYTHON is set to '/elsewhere/bin/python'", fixed = TRUE)
  })
  expect_identical(formals(install_pyluz)$envname, pyluz:::default_envname)
})

test_that("the bundled engine, when the package carries one, is the package's version", {
  dir <- system.file("python", package = "pyluz")
  skip_if_not(nzchar(dir), "this installation was made from the source folder, without the bundled engine")
  expect_equal(basename(pyluz:::bundled_engine()), sprintf("pyluz-%s-py3-none-any.whl", version))
  expect_true("torch==2.13.0" %in% pyluz:::bundled_constraints())
})

test_that("the engine must have the R package's version", {
  expect_null(pyluz:::engine_version_problem(version, version, "/env/bin/python"))
  problem <- pyluz:::engine_version_problem("0.0.1", version, "/env/bin/python")
  expect_equal(problem, sprintf("the engine in /env/bin/python is version 0.0.1, but the R package is version %s.",
                                version))
  msg <- pyluz:::engine_setup_message(problem)
  expect_match(msg, "run `pyluz::install_pyluz()` (again, if you ran it before), then restart R", fixed = TRUE)
  skip_if_no_engine()
  expect_equal(pyluz_engine()$`__version__`, version)
})

test_that("the set-up message names install_pyluz() first, then the ways to bring one's own Python", {
  msg <- withr::with_envvar(c(RETICULATE_PYTHON = NA), pyluz:::engine_setup_message("no Python was found"))
  first <- regexpr("install_pyluz()", msg, fixed = TRUE)
  expect_true(first > 0)
  expect_true(first < regexpr("RETICULATE_PYTHON=", msg, fixed = TRUE))
  expect_match(msg, "reticulate::use_virtualenv(", fixed = TRUE)
  expect_false(grepl("make setup|repository|<repo>|\\.venv", msg))
})
