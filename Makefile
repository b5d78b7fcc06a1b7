# The two commands of the README: `make demo` and `make test`. Both set up what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(CURDIR)/$(VENV)/bin/python
export RETICULATE_PYTHON := $(VPY)
# The R package goes to a library inside the checkout, so two checkouts never share an installed copy.
RLIB := $(CURDIR)/.rlib
export R_LIBS := $(RLIB)
# R tests and vignettes fail (instead of skipping) when the engine can't be found.
export PYLUZ_REQUIRE_ENGINE := 1
# Debian's reticulate 1.28 speaks only the numpy 1.x C API; torch is pinned to the local CPU wheel.
PIP_PINS := torch==2.13.0 "numpy<2" "pandas>=2,<3" tqdm matplotlib safetensors tensorboard scikit-learn pytest "rpy2==3.5.17"
RPKG_FILES := $(shell find rpkg -type f -not -path '*/.Rcheck/*' 2>/dev/null)

.PHONY: setup demo test test-python test-r check-r test-vignettes test-ddp bench clean

setup: .stamp-system .stamp-venv .stamp-rpkg

.stamp-system: scripts/setup-system.sh
	bash scripts/setup-system.sh
	touch $@

.stamp-venv: pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check $(PIP_PINS)
	$(VPY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

.stamp-rpkg: .stamp-system .stamp-venv $(RPKG_FILES)
	mkdir -p $(RLIB)
	R CMD INSTALL --no-multiarch --no-test-load -l $(RLIB) rpkg >/dev/null
	touch $@

demo: setup
	$(VPY) examples/demo.py
	Rscript examples/demo.R

test: setup test-python test-r check-r test-vignettes test-ddp

test-python: setup
	$(VPY) -m pytest -q tests

test-r: setup
	cd rpkg/tests && Rscript testthat.R

check-r: setup
	bash scripts/check-rpkg.sh

test-vignettes: setup
	bash scripts/render-vignettes.sh

test-ddp: setup
	$(VENV)/bin/torchrun --standalone --nproc_per_node=2 tests/distributed/ddp_check.py

# The peers the benchmark compares with (they keep the pinned torch; see bench/README.md).
.stamp-bench: .stamp-venv
	$(VPY) -m pip install -q --disable-pip-version-check lightning poutyne
	touch $@

bench: setup .stamp-bench
	$(VPY) bench/run.py --instructions

clean:
	rm -rf .stamp-* $(VENV) $(RLIB) rpkg.Rcheck
