#!/usr/bin/env bash
# R CMD check of rpkg in a scratch folder; fails on any ERROR or WARNING (NOTEs are allowed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export RETICULATE_PYTHON="${RETICULATE_PYTHON:-$root/.venv/bin/python}"
export PYLUZ_REQUIRE_ENGINE=1  # vignettes must run their code, not skip it
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
R CMD build --no-manual "$root/rpkg" >build.log 2>&1 || { cat build.log; exit 1; }
tarball=$(ls pyluz_*.tar.gz)
_R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual "$tarball" >check.log 2>&1 || true
status=$(grep -E "^Status:" pyluz.Rcheck/00check.log || true)
echo "R CMD check: ${status:-no status}"
if ! grep -qE "^Status: (OK|[0-9]+ NOTEs?)$" pyluz.Rcheck/00check.log; then
  cat pyluz.Rcheck/00check.log
  for f in pyluz.Rcheck/tests/*.Rout.fail pyluz.Rcheck/00install.out; do [ -f "$f" ] && tail -50 "$f"; done
  exit 1
fi
