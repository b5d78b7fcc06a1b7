# The Python engine and every Python module the package uses: one lazy mechanism, py_module().
# Nothing here runs at package load, so `library(pyluz)` never starts Python; the first call that
# needs Python finds it (reticulate's discovery, which `.onLoad` points at the "r-pyluz" environment),
# checks it (numpy, the engine's version) and configures it, once.

.engine <- new.env(parent = emptyenv())  # `modules`: name -> imported Python module

#' The pyluz Python engine
#'
#' `pyluz_engine()` returns the Python module `pyluz` (imported on first use through
#' reticulate) after checking that it can be used from R. `pyluz_engine_available()` says
#' whether that works, without failing.
#'
#' The engine lives in a Python environment that [install_pyluz()] creates (the virtual
#' environment `"r-pyluz"`, which `library(pyluz)` finds by itself). reticulate's own choices
#' take precedence: `RETICULATE_PYTHON`, or `reticulate::use_virtualenv(..., required = TRUE)`
#' called before anything starts Python. The engine's version must be the R package's.
#'
#' @return The `pyluz` Python module; `pyluz_engine_available()` returns `TRUE`/`FALSE`.
#' @examples
#' if (pyluz_engine_available()) {
#'   pyluz_engine()$`__version__`
#' }
#' @export
pyluz_engine <- function() py_module("pyluz")

#' @rdname pyluz_engine
#' @export
pyluz_engine_available <- function() {
  !is.null(.engine$modules) || isTRUE(tryCatch({
    load_engine()
    TRUE
  }, error = function(e) FALSE))
}

# The one way the package reaches a Python module ("torch", "pyluz.interop.torch_ops", "copy", ...):
# imported on first use, after the engine has been loaded and checked, and cached.
py_module <- function(name) {
  if (is.null(.engine$modules)) load_engine()
  mod <- .engine$modules[[name]]
  if (is.null(mod)) {
    mod <- reticulate::import(name)
    .engine$modules[[name]] <- mod
  }
  mod
}

# A submodule of the engine: engine_module("serialization") is `pyluz.serialization`.
engine_module <- function(name) py_module(paste0("pyluz.", name))

load_engine <- function() {
  started <- tryCatch(reticulate::py_available(initialize = TRUE), error = function(e) e)
  if (!isTRUE(started)) {
    problem <- if (inherits(started, "error")) conditionMessage(started) else "no Python was found"
    stop(engine_error(engine_setup_message(paste("Python could not be started:", problem))))
  }
  python <- tryCatch(reticulate::py_config()$python, error = function(e) "unknown")
  if (!reticulate::py_numpy_available()) {
    stop(engine_error(engine_setup_message(sprintf(
      "reticulate %s can't use the numpy of %s (it needs numpy < 2 there).",
      utils::packageVersion("reticulate"), python
    ))))
  }
  eng <- tryCatch(import_pyluz(), error = function(e) {
    msg <- conditionMessage(e)
    problem <- if (grepl("No module named 'pyluz'", msg, fixed = TRUE)) {
      sprintf("the Python module `pyluz` is not installed in %s.", python)
    } else {
      paste("importing `pyluz` failed:", msg)
    }
    stop(engine_error(engine_setup_message(problem)))
  })
  mismatch <- engine_version_problem(as.character(eng$`__version__`), package_version_string(), python)
  if (!is.null(mismatch)) stop(engine_error(engine_setup_message(mismatch)))
  .engine$modules <- list(pyluz = eng)
  configure_engine()
  eng
}

package_version_string <- function() as.character(utils::packageVersion("pyluz"))

# NULL when the engine's version is the R package's, else what is wrong (the engine and the R
# package are released together, so any difference is a stale installation).
engine_version_problem <- function(engine_version, package_version, python) {
  if (identical(as.character(engine_version), as.character(package_version))) return(NULL)
  sprintf("the engine in %s is version %s, but the R package is version %s.",
          python, engine_version, package_version)
}

engine_setup_message <- function(problem) {
  python <- Sys.getenv("RETICULATE_PYTHON", unset = "")
  where <- if (nzchar(python)) {
    sprintf("RETICULATE_PYTHON is set to '%s'.", python)
  } else {
    "RETICULATE_PYTHON is not set, so reticulate looked for the \"r-pyluz\" environment, then any Python."
  }
  paste0(
    "The pyluz Python engine can't be used: ", problem, "\n",
    where, "\n",
    "To set it up, run `pyluz::install_pyluz()` (again, if you ran it before), then restart R.\n",
    "It puts torch and the engine (version ", package_version_string(), ") into the virtual environment ",
    "\"r-pyluz\", which library(pyluz) finds by itself.\n",
    "To use a Python of your own instead, install the engine there ",
    "(`pyluz::install_pyluz(envname = \"/path/to/env\")` does it for a virtual environment) and ",
    "point reticulate at it before using pyluz: set RETICULATE_PYTHON=/path/to/env/bin/python, or call ",
    "reticulate::use_virtualenv(\"/path/to/env\", required = TRUE)."
  )
}

# Import the `pyluz` package itself (before any of its submodules) ignoring the working directory:
# embedded Python puts it on sys.path, and a `pyluz/` folder there (e.g. the installed R package in
# `pyluz.Rcheck/`, or a source copy) would be imported as an empty namespace package that hides the
# engine. A missing engine is left for the import that follows to report.
preimport_pyluz <- function() {
  reticulate::py_run_string(paste(
    "def _pyluz_preimport():",
    "    import importlib, os, sys",
    "    mod = sys.modules.get('pyluz')",
    "    if mod is not None and getattr(mod, '__file__', None) is not None:",
    "        return",
    "    sys.modules.pop('pyluz', None)",
    "    saved = list(sys.path)",
    "    sys.path[:] = [p for p in sys.path if p not in ('', '.', os.getcwd())]",
    "    try:",
    "        mod = importlib.import_module('pyluz')",
    "    except ImportError:",
    "        return",
    "    finally:",
    "        sys.path[:] = saved",
    "    if getattr(mod, '__file__', None) is None:",
    "        del sys.modules['pyluz']",
    "        raise ImportError('`pyluz` resolved to a folder without the engine: ' + str(list(mod.__path__)))",
    "_pyluz_preimport()",
    sep = "\n"), local = TRUE, convert = FALSE)
  invisible()
}

# Import torch so that it uses its own BLAS. R has already loaded its BLAS (often the reference
# one) into the global symbol scope, and torch's matrix products would otherwise bind to it:
# measured here, a 256x256 matmul took 5.3 ms instead of 0.1 ms. RTLD_DEEPBIND makes torch's
# libraries prefer their own symbols; it applies only to this import.
preimport_torch <- function() {
  res <- reticulate::py_run_string(paste(
    "def _pyluz_import_torch():",
    "    import os, sys",
    "    if not hasattr(os, 'RTLD_DEEPBIND'):",
    "        return False",
    "    if 'torch' in sys.modules:",
    "        return not getattr(sys, '_pyluz_torch_deepbind', False)",
    "    flags = sys.getdlopenflags()",
    "    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)",
    "    try:",
    "        import torch",
    "        sys._pyluz_torch_deepbind = True",
    "    except ImportError:",
    "        pass",
    "    finally:",
    "        sys.setdlopenflags(flags)",
    "    return False",
    "_pyluz_torch_bound_late = _pyluz_import_torch()",
    sep = "\n"), local = TRUE, convert = TRUE)
  if (isTRUE(res$`_pyluz_torch_bound_late`)) warn_torch_imported_first()
  invisible()
}

# torch was imported before pyluz could import it (e.g. `reticulate::import("torch")` first):
# its matrix products then use R's BLAS, often the slow reference one. Said once per session.
warn_torch_imported_first <- function() {
  if (isTRUE(.engine$warned_torch_first)) return(invisible())
  .engine$warned_torch_first <- TRUE
  warning(paste0(
    "Python's torch was imported before pyluz, so its matrix products may use R's BLAS ",
    "(measured: about 2x slower training steps with R's reference BLAS). ",
    "Load the engine first: call `pyluz_engine()` (or any pyluz function) before ",
    "`reticulate::import(\"torch\")`, in a new R session."
  ), call. = FALSE)
  invisible()
}

import_pyluz <- function() {
  preimport_torch()
  preimport_pyluz()
  reticulate::import("pyluz")
}

engine_error <- function(message) {
  structure(class = c("pyluz_engine_error", "error", "condition"),
            list(message = message, call = NULL))
}

# What R needs from Python once per session: no tqdm monitor thread (it would call R from a
# background thread when output is remapped) and the cli progress renderer.
configure_engine <- function() {
  if (reticulate::py_module_available("tqdm")) {
    tqdm <- py_module("tqdm")
    tqdm$tqdm$monitor_interval <- 0L
  }
  engine_module("interop.progress")$use_r_renderer(r_callable(new_progress_renderer))
  # R's RNG is saved and restored with the engine's (AutoResume checkpoints, restore_rng_state).
  engine_module("rng")$register_rng_source(
    "R",
    py_function(get_r_seed, "reading R's .Random.seed"),
    py_function(set_r_seed, "setting R's .Random.seed", returns = FALSE)
  )
  invisible(TRUE)
}

get_r_seed <- function() get0(".Random.seed", envir = globalenv(), inherits = FALSE)

set_r_seed <- function(state) assign(".Random.seed", as.integer(state), envir = globalenv())
