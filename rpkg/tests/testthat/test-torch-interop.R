test_that("R modules called from a Python thread fail cleanly", {
  skip_if_no_torch()
  Net <- nn_module(initialize = function() self$fc <- nn_linear(2, 2), forward = function(x) self$fc(x))
  model <- Net()
  py <- py_functions(paste(
    "import threading",
    "def call_in_thread(f, *args):",
    "    out = {}",
    "    def run():",
    "        try:",
    "            out['value'] = f(*args)",
    "        except Exception as e:",
    "            out['error'] = e",
    "    t = threading.Thread(target=run, name='worker-1')",
    "    t.start()",
    "    t.join()",
    "    if 'error' in out:",
    "        raise out['error']",
    "    return out['value']",
    sep = "\n"))
  expect_error(py$call_in_thread(model, torch_ones(1, 2)), "main thread.*worker-1")
  # the same call on the main thread works
  expect_equal(model(torch_ones(1, 2))$shape, c(1L, 2L))
  ds <- dataset(.getitem = function(i) i, .length = function() 2)()
  expect_error(py$call_in_thread(reticulate::py_get_attr(ds, "__getitem__"), 0L), "main thread")
})

test_that("the guard marks R callables", {
  skip_if_no_torch()
  guard <- reticulate::import("pyluz.interop.guard")
  g <- guard$guard(function(x) x + 1, "add_one")
  expect_true(guard$is_r_callable(g))
  expect_equal(g(1), 2)
})

test_that("module state is released when R and Python drop it", {
  skip_if_no_torch()
  Net <- nn_module(initialize = function() self$fc <- nn_linear(2, 2), forward = function(x) self$fc(x))
  weakref <- reticulate::import("weakref")
  make <- function() {
    m <- Net()
    m(torch_ones(1, 2))
    weakref$ref(m)
  }
  w <- make()
  # strong references cached while R code runs are dropped at top level;
  # simulate that here, then collect on both sides
  pyluz:::.clear_strong_refs()
  invisible(gc())
  reticulate::import("gc")$collect()
  expect_null(reticulate::py_to_r(reticulate::py_call(w)))
})

test_that("Python warnings raised during R calls are R warnings, without file paths", {
  skip_if_no_torch()
  invisible(torch_ones(1))   # the layer is loaded (installs the warning bridge)
  w <- reticulate::py_run_string(
    "import warnings\ndef warn(msg):\n  warnings.warn(msg)\n  return None", convert = FALSE)$warn
  seen <- NULL
  withCallingHandlers(w("careful (Triggered internally at /pytorch/aten/src/x.cpp:1.)"),
                      warning = function(c) {
                        seen <<- c
                        invokeRestart("muffleWarning")
                      })
  expect_s3_class(seen, "python_warning")
  expect_equal(conditionMessage(seen), "UserWarning: careful")
  expect_silent(suppressWarnings(w("quiet")))
  expect_warning(w("loud"), "^UserWarning: loud$")
})

test_that("R errors in functions handed to Python come back as themselves", {
  skip_if_no_torch()
  m <- nn_sequential(nn_linear(2, 2))
  err <- tryCatch(m$apply(function(mod) if (inherits(mod, "nn_linear")) stop("bad init")),
                  error = function(e) e)
  expect_equal(conditionMessage(err), "bad init")
  expect_false(grepl("RuntimeError", conditionMessage(err)))
})
