#!/usr/bin/env bash
# Executes every vignette (Python ones through knitr's python engine on the project venv).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export RETICULATE_PYTHON="${RETICULATE_PYTHON:-$root/.venv/bin/python}"
export PYLUZ_REQUIRE_ENGINE=1  # vignettes must run their code, not skip it
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
n=0
for f in "$root"/vignettes/*.Rmd "$root"/rpkg/vignettes/*.Rmd; do
  [ -f "$f" ] || continue
  echo "rendering $(basename "$f")"
  Rscript -e "rmarkdown::render('$f', output_dir = '$out', intermediates_dir = '$out', knit_root_dir = '$out', quiet = TRUE)"
  n=$((n + 1))
done
echo "vignettes: $n passed, 0 failed"
