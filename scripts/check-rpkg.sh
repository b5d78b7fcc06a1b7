#!/usr/bin/env bash
# R CMD check of the built tarball (as CRAN would) in a scratch folder; fails on any ERROR or WARNING
# (NOTEs are allowed; docs/PACKAGING.md lists the ones that remain and why).
# Usage: check-rpkg.sh dist/pyluz_<version>.tar.gz   (`make check-r` builds it first)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tarball=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
export RETICULATE_PYTHON="${RETICULATE_PYTHON:-$root/.venv/bin/python}"
export PYLUZ_REQUIRE_ENGINE=1  # vignettes and tests must run their code, not skip it
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
_R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual "$tarball" >check.log 2>&1 || true
status=$(grep -E "^Status:" pyluz.Rcheck/00check.log || true)
echo "R CMD check: ${status:-no status}"
grep -E "^\* checking .*\.\.\. NOTE" pyluz.Rcheck/00check.log || true
if ! grep -qE "^Status: (OK|[0-9]+ NOTEs?)$" pyluz.Rcheck/00check.log; then
  cat pyluz.Rcheck/00check.log
  for f in pyluz.Rcheck/tests/*.Rout.fail pyluz.Rcheck/00install.out; do [ -f "$f" ] && tail -50 "$f"; done
  exit 1
fi
