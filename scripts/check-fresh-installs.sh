#!/usr/bin/env bash
# Both fresh installs at once (they mostly wait on the disk): the wheel into a new venv, and the R
# tarball with install_pyluz(). Fails when either fails. Usage: check-fresh-installs.sh WHEEL RTARBALL
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/check-wheel-install.sh" "$1" & wheel=$!
bash "$here/check-rpkg-install.sh" "$2" & rpkg=$!
failed=0
wait "$wheel" || { echo "fresh install from the wheel: FAILED" >&2; failed=1; }
echo "fresh install from the wheel: done after ${SECONDS}s"
wait "$rpkg" || { echo "fresh install from the R tarball: FAILED" >&2; failed=1; }
echo "fresh installs: ${SECONDS}s in all"
exit "$failed"
