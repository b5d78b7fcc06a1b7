#!/usr/bin/env bash
# Installs the Debian packages pyluz needs (R and friends), only those that are missing.
set -euo pipefail
pkgs=(r-base-core r-base-dev r-cran-reticulate r-cran-testthat r-cran-magrittr r-cran-r6 r-cran-rlang
      r-cran-cli r-cran-ggplot2 r-cran-withr r-cran-knitr r-cran-rmarkdown pandoc r-cran-roxygen2
      r-cran-lintr)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
