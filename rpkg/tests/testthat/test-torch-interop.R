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

# The R-torch layer's calls go through the package's C path (pyref.c) when it can convert every
# argument; the tests compare it with reticulate's own call.
py_call_fixtures <- function() {
  code <- "
import torch
calls = []
def echo(*args, **kwargs):
    calls.append((args, kwargs))
    return args if not kwargs else (args, kwargs)
def add(x, y, alpha=1):
    return torch.add(x, y, alpha=alpha)
def boom(x):
    raise ValueError(f'bad x: {x}')
class Fresh:
    pass
def fresh():
    return Fresh()
def warn(text):
    import warnings
    warnings.warn(text)
    return 1
def via(f):
    return lambda x: f(x)
"
  ns <- reticulate::py_eval("{}", convert = FALSE)
  reticulate::import_builtins(convert = FALSE)$exec(code, ns)
  names <- c("calls", "echo", "add", "boom", "fresh", "warn", "via")
  stats::setNames(lapply(names, function(n) reticulate::py_get_item(ns, n)), names)
}

test_that("the C call path gives what reticulate's call gives, with kwargs and each argument kind", {
  skip_if_no_torch()
  py <- py_call_fixtures()
  x <- torch_ones(2, 3)
  y <- torch_arange(0, 5)$reshape(c(2, 3))
  direct <- .Call(pyluz:::C_py_call, py$add, list(x, y), list(alpha = 2L), pyluz:::.py_classes)
  generic <- reticulate::py_call(py$add, x, y, alpha = 2L)
  expect_false(is.null(direct))
  expect_identical(class(direct), class(generic))
  expect_identical(get("convert", envir = direct), get("convert", envir = generic))
  expect_true(torch_equal(direct, generic))
  expect_equal(as_array(direct), matrix(c(1, 7, 3, 9, 5, 11), 2))
  # plain length-one values arrive as the same Python values reticulate makes
  echoed <- .Call(pyluz:::C_py_call, py$echo, list(1.5, 2L, TRUE, "a", NULL), NULL, pyluz:::.py_classes)
  if (inherits(echoed, "pyluz_bare")) echoed <- pyluz:::py_unbare(echoed)
  expect_identical(reticulate::py_repr(echoed),
                   reticulate::py_repr(reticulate::py_call(py$echo, 1.5, 2L, TRUE, "a", NULL)))
  expect_identical(reticulate::py_repr(echoed), "(1.5, 2, True, 'a', None)")
  expect_identical(pyluz:::.pycall(py$echo, "\u00e9t\u00e9"), reticulate::py_to_r(reticulate::py_call(py$echo, "\u00e9t\u00e9")))
})

test_that("arguments the C path does not convert go to reticulate before anything is called", {
  skip_if_no_torch()
  py <- py_call_fixtures()
  not_mine <- list(c(1, 2), NA, NA_integer_, NA_character_, list(1), function(x) x, 1:2,
                   structure(1, class = "myclass"), matrix(1), factor("a"))
  for (arg in not_mine) {
    expect_null(.Call(pyluz:::C_py_call, py$echo, list(arg), NULL, pyluz:::.py_classes))
    expect_null(.Call(pyluz:::C_py_call, py$echo, list(1), list(k = arg), pyluz:::.py_classes))
  }
  expect_equal(reticulate::py_len(py$calls), 0L)      # nothing was called on the way
  # and .pycall() still gives reticulate's result for them
  expect_identical(pyluz:::.pycall(py$echo, c(1, 2)),
                   reticulate::py_to_r(reticulate::py_call(py$echo, c(1, 2))))
  expect_null(.Call(pyluz:::C_py_call, "not Python", list(), NULL, pyluz:::.py_classes))
})

test_that("a result of a new type is wrapped by reticulate once, then by the C path", {
  skip_if_no_torch()
  py <- py_call_fixtures()
  first <- .Call(pyluz:::C_py_call, py$fresh, list(), NULL, pyluz:::.py_classes)
  expect_s3_class(first, "pyluz_bare")
  value <- pyluz:::py_unbare(first)
  expected <- reticulate::py_call(py$fresh)
  expect_identical(class(value), class(expected))
  expect_identical(get("convert", envir = value), FALSE)          # the called function's convert
  again <- .Call(pyluz:::C_py_call, py$fresh, list(), NULL, pyluz:::.py_classes)
  expect_false(inherits(again, "pyluz_bare"))
  expect_identical(class(again), class(expected))
  expect_identical(get("convert", envir = again), FALSE)
})

test_that("errors through the C call path read as reticulate's, R errors inside come back as themselves", {
  skip_if_no_torch()
  py <- py_call_fixtures()
  mine <- tryCatch(pyluz:::.pycall(py$boom, 3), error = function(e) e)
  theirs <- tryCatch(reticulate::py_call(py$boom, 3), error = function(e) e)
  expect_identical(class(mine), class(theirs))
  expect_identical(conditionMessage(mine), conditionMessage(theirs))
  expect_match(conditionMessage(mine), "bad x: 3")
  # an R error raised in an R function that Python calls during the call
  relay <- reticulate::py_call(py$via, function(x) stop("R says no to ", x))
  mine <- tryCatch(pyluz:::.pycall(relay, 2), error = function(e) e)
  theirs <- tryCatch(reticulate::py_call(relay, 2), error = function(e) e)
  expect_identical(conditionMessage(mine), conditionMessage(theirs))
  expect_identical(class(mine), class(theirs))
  # Python warnings still reach R's handlers
  invisible(torch_ones(1))
  expect_warning(pyluz:::.pycall(py$warn, "careful"), "UserWarning: careful")
  seen <- NULL
  withCallingHandlers(pyluz:::.pycall(py$warn, "twice"), warning = function(w) {
    seen <<- conditionMessage(w)
    invokeRestart("muffleWarning")
  })
  expect_identical(seen, "UserWarning: twice")
})

test_that("the C call path keeps no reference to its arguments and one to its result", {
  skip_if_no_torch()
  x <- torch_ones(3)
  identity <- reticulate::py_eval("lambda t: t", convert = FALSE)
  invisible(.Call(pyluz:::C_py_call, identity, list(x), NULL, pyluz:::.py_classes))   # type known
  held <- references_held(x, function() .Call(pyluz:::C_py_call, identity, list(x), NULL, pyluz:::.py_classes), 5)
  expect_equal(held, c(5, 0))
})
