# install_pyluz(): the Python side of the package in one call, as tensorflow/keras do it: a
# virtual environment (reticulate's functions and conventions) with torch and the engine that
# ships inside this R package (inst/python/, added when the package is built), at the versions it
# was tested with (the bundled constraints file).

#' Install the pyluz Python engine
#'
#' Creates a Python virtual environment (or reuses it) and installs into it PyTorch, the pyluz
#' engine that comes with this R package (the same version) and the engine's dependencies. Run it
#' once; `library(pyluz)` then finds the environment `"r-pyluz"` by itself, in every new R
#' session. Running it again changes only what is missing or out of date (e.g. after updating the
#' R package) and says what it did.
#'
#' The environment is created with `reticulate::virtualenv_create()`, so a name is a folder in
#' `reticulate::virtualenv_root()` (the `WORKON_HOME` environment variable, else
#' `~/.virtualenvs`). With reticulate < 1.38, which speaks only numpy 1.x, it also installs
#' `numpy<2`.
#'
#' @param envname The virtual environment: a name or a path. pyluz finds `"r-pyluz"` by itself;
#'   for any other, call `reticulate::use_virtualenv(envname, required = TRUE)` (or set
#'   `RETICULATE_PYTHON` to its Python) before using pyluz.
#' @param python The Python (a path) to create the environment with; by default reticulate's
#'   choice (`RETICULATE_PYTHON`, else `python3` on the `PATH`). Used only when the environment
#'   does not exist yet. The engine needs Python 3.10 or newer.
#' @param torch The pip requirement for PyTorch, e.g. `"torch==2.5.1"` or `"torch"` (the newest).
#'   `NULL` (the default) keeps a torch already in the environment, else installs the version this
#'   release is tested with. For a CUDA build, add PyTorch's package index with `pip_options`.
#' @param pip_options More arguments for `pip install`, e.g.
#'   `c("--extra-index-url", "https://download.pytorch.org/whl/cu124")`.
#' @return The path of the environment's Python, invisibly.
#' @examples
#' \dontrun{
#' install_pyluz()
#' # then, in a new R session:
#' library(pyluz)
#' }
#' @export
install_pyluz <- function(envname = "r-pyluz", python = NULL, torch = NULL,
                          pip_options = character()) {
  wheel <- bundled_engine()
  env_python <- reticulate::virtualenv_python(envname)
  if (!reticulate::virtualenv_exists(envname)) {
    reticulate::virtualenv_create(envname, python = python, packages = FALSE)
  } else if (!is.null(python)) {
    message(sprintf("The virtual environment '%s' exists already, so `python` is not used ", envname),
            "(remove it with reticulate::virtualenv_remove() to create it anew).")
  }
  before <- installed_versions(env_python)
  plan <- install_plan(before, torch, utils::packageVersion("reticulate"), bundled_constraints())
  if (is.null(plan)) {
    message(sprintf("Nothing to do: '%s' has %s.", envname, describe_versions(before)))
  } else {
    constraints <- tempfile("pyluz-constraints", fileext = ".txt")
    on.exit(unlink(constraints), add = TRUE)
    writeLines(plan$constraints, constraints)
    reticulate::virtualenv_install(envname, c(plan$packages, wheel),
                                   pip_options = c("-c", constraints, pip_options))
    after <- installed_versions(env_python)
    message(sprintf("Installed into '%s' (%s): %s.", envname, env_python, describe_changes(before, after)))
  }
  message(next_step_message(envname, env_python))
  invisible(env_python)
}

# The engine wheel this R package carries (same version as the package).
bundled_engine <- function() {
  name <- sprintf("pyluz-%s-py3-none-any.whl", package_version_string())
  wheel <- file.path(system.file("python", package = "pyluz"), name)
  if (!file.exists(wheel)) {
    stop("This copy of the pyluz R package does not carry its Python engine (", name, " in its ",
         "'python' folder): it was built from sources without it (the sources' `make dist` adds it). ",
         "Install the pyluz ", package_version_string(), " Python package with pip into a Python of ",
         "your own and point reticulate at it (RETICULATE_PYTHON).", call. = FALSE)
  }
  wheel
}

# The versions this release is tested with: the pins of the bundled constraints file.
bundled_constraints <- function() {
  path <- system.file("python", "constraints.txt", package = "pyluz")
  lines <- if (nzchar(path)) readLines(path, warn = FALSE) else character()
  lines <- trimws(sub("#.*$", "", lines))
  lines[nzchar(lines)]
}

# Versions of the packages install_pyluz() manages in the environment of `python` (NA: absent).
installed_versions <- function(python) {
  code <- paste(
    "import importlib.metadata as m",
    "for n in ('pyluz', 'torch', 'numpy'):",
    "    try: print(n, m.version(n))",
    "    except m.PackageNotFoundError: print(n, '-')",
    sep = "\n")
  out <- suppressWarnings(system2(python, c("-c", shQuote(code)), stdout = TRUE, stderr = FALSE))
  parts <- strsplit(out, " ", fixed = TRUE)
  versions <- c(pyluz = NA_character_, torch = NA_character_, numpy = NA_character_)
  for (p in parts) if (length(p) == 2 && p[[1]] %in% names(versions) && p[[2]] != "-") versions[[p[[1]]]] <- p[[2]]
  versions
}

# What pip has to do, or NULL when the environment is complete. `installed`: installed_versions();
# `torch`: the user's requirement or NULL (keep, or the tested version when absent).
install_plan <- function(installed, torch, reticulate_version, constraints) {
  pinned <- function(pkg) grepl(sprintf("^%s[[:space:]]*([=<>!~;]|$)", pkg), constraints)
  tested_torch <- constraints[pinned("torch")]
  torch_req <- if (!is.null(torch)) torch else if (is.na(installed[["torch"]])) c(tested_torch, "torch")[[1]]
  numpy_req <- if (reticulate_version < "1.38") "numpy<2"  # else numpy comes with the engine, any version
  numpy_ok <- !is.na(installed[["numpy"]]) &&
    (reticulate_version >= "1.38" || numeric_version(installed[["numpy"]], strict = FALSE) < "2")
  torch_ok <- !is.na(installed[["torch"]]) &&
    (is.null(torch_req) || satisfies_pin(installed[["torch"]], torch_req))
  engine_ok <- identical(unname(installed[["pyluz"]]), package_version_string())
  if (engine_ok && torch_ok && numpy_ok) return(NULL)
  # torch and numpy are decided here; the other pins (pandas, ...) apply as they are.
  list(packages = c(torch_req, numpy_req), constraints = constraints[!pinned("torch") & !pinned("numpy")])
}

# Whether an installed version meets an exact pin like "torch==2.13.0" (a local label such as
# "+cpu" does not count, as for pip); any other requirement is left to pip.
satisfies_pin <- function(version, requirement) {
  pin <- regmatches(requirement, regexec("==[[:space:]]*([^,; ]+)[[:space:]]*$", requirement))[[1]]
  length(pin) == 2 && identical(sub("\\+.*$", "", version), pin[[2]])
}

describe_versions <- function(versions) {
  shown <- ifelse(is.na(versions), "none", versions)
  paste(sprintf("%s %s", names(versions), shown), collapse = ", ")
}

describe_changes <- function(before, after) {
  paste(vapply(names(after), function(n) {
    was <- before[[n]]
    now <- if (is.na(after[[n]])) "missing" else after[[n]]
    if (identical(was, after[[n]])) sprintf("%s %s (unchanged)", n, now)
    else sprintf("%s %s (was %s)", n, now, if (is.na(was)) "not installed" else was)
  }, ""), collapse = ", ")
}

next_step_message <- function(envname, env_python) {
  chosen <- Sys.getenv("RETICULATE_PYTHON", unset = "")
  elsewhere <- nzchar(chosen) &&
    !identical(normalizePath(chosen, mustWork = FALSE), normalizePath(env_python, mustWork = FALSE))
  how <- if (elsewhere) {
    sprintf("RETICULATE_PYTHON is set to '%s', which reticulate prefers: unset it to use this environment.",
            chosen)
  } else if (!identical(envname, default_envname)) {
    sprintf("Before using pyluz, call reticulate::use_virtualenv(\"%s\", required = TRUE).", envname)
  } else {
    "library(pyluz) finds this environment by itself."
  }
  if (reticulate::py_available(initialize = FALSE)) {
    how <- paste(how, sprintf("This R session already runs Python (%s): restart R first.",
                              reticulate::py_config()$python))
  }
  how
}
