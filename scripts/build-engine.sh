#!/usr/bin/env bash
# Builds the engine's wheel and sdist into dist/ and stages the wheel and the constraints file into
# rpkg/inst/python/ (git-ignored), where `R CMD build rpkg` picks them up: the R package's tarball
# carries the engine of its own version. Fails when rpkg/DESCRIPTION's version is not the engine's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=${VPY:-$root/.venv/bin/python}
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' pyluz/_version.py)
rversion=$(sed -n 's/^Version: *//p' rpkg/DESCRIPTION)
if [ "$version" != "$rversion" ]; then
  echo "version mismatch: pyluz/_version.py says $version, rpkg/DESCRIPTION says $rversion (they must agree)" >&2
  exit 1
fi
mkdir -p dist rpkg/inst/python
rm -f dist/pyluz-*.whl dist/pyluz-*.tar.gz rpkg/inst/python/*
# sdist first, then the wheel from the unpacked sdist (a clean tree: no stale build/ files)
"$python" -m build --outdir dist . >dist/engine-build.log 2>&1 || { cat dist/engine-build.log; exit 1; }
cp "dist/pyluz-$version-py3-none-any.whl" constraints.txt rpkg/inst/python/
echo "engine $version: $(cd dist && ls pyluz-"$version"*)"
