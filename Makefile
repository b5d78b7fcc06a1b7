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
# What pyluz needs is declared once, in pyproject.toml (with its extras); constraints.txt pins the
# versions of this machine (torch==2.13.0, the local CPU wheel; numpy<2 for Debian's reticulate 1.28; ...).
PIP := $(VPY) -m pip install -q --disable-pip-version-check -c constraints.txt
# The one version source; rpkg/DESCRIPTION must agree (scripts/build-engine.sh and a test check it).
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' pyluz/_version.py)
ENGINE_FILES := pyproject.toml README.md constraints.txt \
  $(shell find pyluz -type f -not -name '*.pyc' -not -path '*/__pycache__/*' 2>/dev/null)
WHEEL := dist/pyluz-$(VERSION)-py3-none-any.whl
RTARBALL := dist/pyluz_$(VERSION).tar.gz
RPKG_FILES := $(shell find rpkg -type f -not -path '*/.Rcheck/*' -not -path 'rpkg/inst/python/*' -not -name '*.o' -not -name '*.so' 2>/dev/null)

.PHONY: setup demo test test-python test-doctest test-r check-r test-vignettes test-ddp test-install dist engine bench clean lint format

setup: .stamp-system .stamp-venv .stamp-rpkg

.stamp-system: scripts/setup-system.sh
	bash scripts/setup-system.sh
	touch $@

.stamp-venv: pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[r,test]"
	touch $@

# The engine's wheel and sdist in dist/, the wheel (and constraints.txt) also staged in rpkg/inst/python/
# (git-ignored) so that the R package's tarball carries it.
.stamp-engine: .stamp-venv $(ENGINE_FILES) rpkg/DESCRIPTION
	VPY=$(VPY) bash scripts/build-engine.sh
	touch $@

# The R package's source tarball (with the engine), as `R CMD build rpkg` makes it.
$(RTARBALL): .stamp-engine .stamp-rpkg $(RPKG_FILES)
	cd dist && R CMD build --no-manual ../rpkg >r-build.log 2>&1 || { cat r-build.log; exit 1; }

# Both languages' artifacts: dist/pyluz-<v>-py3-none-any.whl, dist/pyluz-<v>.tar.gz, dist/pyluz_<v>.tar.gz.
dist: $(RTARBALL)

# Only the engine staged into rpkg/inst/python/: then `R CMD build rpkg` makes the same tarball.
engine: .stamp-engine

.stamp-rpkg: .stamp-system .stamp-venv $(RPKG_FILES)
	mkdir -p $(RLIB)
	R CMD INSTALL --no-multiarch --no-test-load -l $(RLIB) rpkg >/dev/null
	touch $@

demo: setup
	$(VPY) examples/demo.py
	Rscript examples/demo.R

test: setup test-python test-doctest test-r check-r test-vignettes test-ddp test-install

test-python: setup
	$(VPY) -m pytest -q tests

# Docstring examples written as `>>>` run; interop/ and rdata need R (they are exercised from R's tests).
test-doctest: setup
	$(VPY) -m pytest -q -p no:cacheprovider --doctest-modules pyluz --ignore=pyluz/interop --ignore=pyluz/rdata.py

test-r: setup
	cd rpkg/tests && Rscript testthat.R

check-r: setup $(RTARBALL)
	bash scripts/check-rpkg.sh $(RTARBALL)

test-vignettes: setup
	bash scripts/render-vignettes.sh

# Both languages under torchrun (2 gloo ranks): the Python script, then R processes embedding the engine,
# then an R error on one rank (every rank must end), then both checks as two nodes (two launchers,
# --nnodes=2, localhost rendezvous).
test-ddp: setup
	$(VENV)/bin/torchrun --standalone --nproc_per_node=2 tests/distributed/ddp_check.py
	$(VENV)/bin/torchrun --standalone --nproc_per_node=2 --no-python Rscript tests/distributed/ddp_check.R
	bash tests/distributed/ddp_error_check.sh $(VENV)/bin/torchrun
	bash tests/distributed/multinode_check.sh $(VENV)/bin/torchrun tests/distributed/ddp_check.py
	bash tests/distributed/multinode_check.sh $(VENV)/bin/torchrun tests/distributed/ddp_check.R Rscript

# Both fresh installs, in throwaway locations: the wheel into a new venv; the R tarball into a new
# library, then install_pyluz() into a new virtualenv root, with RETICULATE_PYTHON unset.
test-install: setup $(RTARBALL)
	bash scripts/check-fresh-installs.sh $(WHEEL) $(RTARBALL)

# The peers the benchmark compares with (they keep the pinned torch; see bench/README.md).
.stamp-bench: .stamp-venv
	$(VPY) -m pip install -q --disable-pip-version-check lightning poutyne
	touch $@

bench: setup .stamp-bench
	$(VPY) bench/run.py --instructions

# Lint: ruff (pinned, the `lint` extra) over the Python code, lintr over the R package (scripts/lint-r.R).
RUFF_VERSION := 0.8.6
.stamp-ruff: .stamp-venv
	$(VPY) -m pip install -q --disable-pip-version-check "ruff==$(RUFF_VERSION)"
	touch $@

lint: .stamp-ruff
	$(VENV)/bin/ruff check pyluz tests bench scripts examples
	$(VENV)/bin/ruff format --check pyluz tests bench scripts examples
	Rscript scripts/lint-r.R

# Formats the Python code (the repository-wide formatting commit is listed in .git-blame-ignore-revs).
format: .stamp-ruff
	$(VENV)/bin/ruff format pyluz tests bench scripts examples

clean:
	rm -rf .stamp-* $(VENV) $(RLIB) rpkg.Rcheck dist rpkg/inst/python
