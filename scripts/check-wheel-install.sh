#!/usr/bin/env bash
# The Python package from its wheel, as a user gets it: a new virtual environment (no system
# site-packages, not the checkout's .venv) with the machine's pins, then `import pyluz` and a fit,
# run from outside the checkout. Also checks what the wheel and the sdist carry.
# Usage: check-wheel-install.sh dist/pyluz-<version>-py3-none-any.whl   (`make test-install`)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
wheel=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
sdist=${wheel%-py3-none-any.whl}.tar.gz
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/pyluz/_version.py")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar tzf "$sdist" >"$work/sdist.txt"
grep -q "^pyluz-$version/pyluz/py.typed$" "$work/sdist.txt" || { echo "the sdist lacks pyluz/py.typed" >&2; exit 1; }
"${PYTHON:-python3}" -m venv "$work/venv"
# --no-compile: byte-compiling torch's files would double the time, and nothing here needs it.
"$work/venv/bin/python" -m pip install --no-compile -c "$root/constraints.txt" "$wheel" >"$work/pip.log" 2>&1 \
  || { cat "$work/pip.log"; exit 1; }
cd "$work"  # the checkout's pyluz/ must not be importable
"$work/venv/bin/python" - "$version" "$root" <<'PY'
import importlib.metadata as md
import pathlib
import sys

import torch

import pyluz

version, root = sys.argv[1], pathlib.Path(sys.argv[2]).resolve()
where = pathlib.Path(pyluz.__file__).resolve().parent
assert root not in where.parents, f"pyluz was imported from the checkout: {where}"
assert pyluz.__version__ == md.version("pyluz") == version, (pyluz.__version__, md.version("pyluz"), version)
assert (where / "py.typed").is_file(), "the wheel lacks py.typed"
extras = set(md.metadata("pyluz").get_all("Provides-Extra"))
assert {"r", "tensorboard", "torchmetrics", "test"} <= extras, extras
assert md.version("torch").startswith("2.13.0") and md.version("numpy") < "2", (md.version("torch"), md.version("numpy"))

torch.manual_seed(0)
x = torch.randn(256, 3)
y = x @ torch.tensor([[1.0], [2.0], [-1.0]]) + 0.5
fitted = (pyluz.setup(torch.nn.Linear, loss=torch.nn.MSELoss(), optimizer=torch.optim.SGD)
          .set_hparams(in_features=3, out_features=1).set_opt_hparams(lr=0.1)
          .fit((x, y), epochs=10, verbose=False))
losses = [epoch["loss"] for epoch in fitted.records["metrics"]["train"]]
assert len(losses) == 10 and losses[-1] < 0.01 * losses[0], losses
print(f"wheel: pyluz {pyluz.__version__} from {where} (fresh venv), fit loss {losses[0]:.3f} -> {losses[-1]:.5f}")
PY
