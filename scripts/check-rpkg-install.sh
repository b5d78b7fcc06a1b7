#!/usr/bin/env bash
# The R package from its tarball, as an R user gets it: installed into a new library, then
# install_pyluz() creates the "r-pyluz" virtual environment in a new virtualenv root, and a new R
# session finds it by itself (RETICULATE_PYTHON unset) and runs the get-started vignette's code.
# Then: a second install_pyluz() has nothing to do; an engine of another version is refused with a
# message naming install_pyluz(), which repairs it.
# Usage: check-rpkg-install.sh dist/pyluz_<version>.tar.gz   (`make test-install`)
set -euo pipefail
tarball=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset RETICULATE_PYTHON RETICULATE_PYTHON_ENV RETICULATE_PYTHON_FALLBACK PYLUZ_REQUIRE_ENGINE
export WORKON_HOME="$work/virtualenvs"               # reticulate 1.28's virtualenv_root()
export RETICULATE_VIRTUALENV_ROOT="$WORKON_HOME"     # the same for newer reticulate
export RETICULATE_MINICONDA_PATH="$work/no-miniconda"
export R_LIBS="$work/lib" R_LIBS_USER="$work/lib"
mkdir -p "$R_LIBS"
cd "$work"
step() {  # step NAME R-CODE: runs the code in a new R session, keeps its output in NAME.log
  Rscript -e "$2" >"$1.log" 2>&1 || { echo "step '$1' failed:" >&2; cat "$1.log" >&2; exit 1; }
}
expect() {  # expect NAME TEXT: the step's output contains TEXT
  grep -qF -- "$2" "$1.log" || { echo "step '$1' did not say: $2" >&2; cat "$1.log" >&2; exit 1; }
}
R CMD INSTALL -l "$R_LIBS" "$tarball" >install.log 2>&1 || { cat install.log; exit 1; }
# Debian's Python, as on a user's Debian machine. (Here the PATH's python3 is a pyenv build with a
# shared libpython, which R's LD_LIBRARY_PATH swaps for Debian's under R: its ssl module then fails.)
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
# --no-compile only to save time here (byte-compiling torch); users get pip's default.
step install "pyluz::install_pyluz(python = '$python', pip_options = '--no-compile')"
expect install "Installed into 'r-pyluz'"
expect install "library(pyluz) finds this environment by itself."
step again 'pyluz::install_pyluz()'
expect again "Nothing to do: 'r-pyluz' has pyluz"
step get-started '
  source(system.file("doc", "get-started.R", package = "pyluz"))
  python <- reticulate::py_config()$python
  stopifnot(startsWith(python, Sys.getenv("WORKON_HOME")), nrow(get_metrics(fitted)) > 0)
  cat("get-started ran on", python, "\n")'
expect get-started "get-started ran on $WORKON_HOME/r-pyluz/bin/python"
# RETICULATE_PYTHON still wins over the environment pyluz prefers
RETICULATE_PYTHON=$python step chosen '
  tryCatch(pyluz::pyluz_engine(), pyluz_engine_error = function(e) cat(conditionMessage(e), "\n"))
  cat("python:", normalizePath(reticulate::py_config()$python), "\n")'
expect chosen "python: $(readlink -f "$python")"
# an engine that claims another version (as after updating only the R package)
env_python="$WORKON_HOME/r-pyluz/bin/python"
site=$("$env_python" -c 'import importlib.util as u; print(u.find_spec("pyluz").submodule_search_locations[0])')
sed -i 's/^__version__ = .*/__version__ = "0.0.1"/' "$site/_version.py"
sed -i 's/^Version: .*/Version: 0.0.1/' "$site"/../pyluz-*.dist-info/METADATA
step mismatch 'tryCatch(pyluz::pyluz_engine(), pyluz_engine_error = function(e) cat(conditionMessage(e)))'
expect mismatch "is version 0.0.1, but the R package is version"
expect mismatch "run \`pyluz::install_pyluz()\` (again"
step repair 'pyluz::install_pyluz(pip_options = "--no-compile")'
expect repair "(was 0.0.1)"
step repaired 'stopifnot(pyluz::pyluz_engine_available()); cat("engine", pyluz::pyluz_engine()$`__version__`, "\n")'
echo "R tarball: install_pyluz() into a new env, get-started, re-run, RETICULATE_PYTHON, version check: ok"
