# darktrigger: `make demo` runs the main job, `make test` the tests; both build .venv first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The stamp is keyed on the pins' content: a changed lock or pyproject rebuilds, an unchanged one installs nothing.
PIN_HASH := $(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.pins-$(PIN_HASH)
PYTEST_ARGS ?=

.PHONY: venv sysdeps demo test test-fast bench lint clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
		echo "creating $(VENV) (Python 3.11)"; rm -rf $(VENV); $(PYTHON) -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip==23.2.1
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	@rm -f $(VENV)/.pins-*; touch $@

# Debian's prometheus (promtool) and chromium, for the monitoring tests and the live page,
# and ccache, which `make test` puts in front of g++ (only a speed-up: without it the tests
# run as they are); installed only when missing, the package lists refreshed only if an
# install fails.
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends
sysdeps:
	@command -v promtool >/dev/null || $(APT_INSTALL) prometheus || \
		{ apt-get update && $(APT_INSTALL) prometheus; }
	@command -v chromium >/dev/null || $(APT_INSTALL) chromium || \
		{ apt-get update && $(APT_INSTALL) chromium; }
	@command -v ccache >/dev/null || $(APT_INSTALL) ccache || \
		{ apt-get update && $(APT_INSTALL) ccache; } || \
		echo "sysdeps: ccache could not be installed; the tests run without it (slower)"

demo: venv sysdeps
	$(VENV)/bin/darktrigger demo

# Two pytest workers, one test file each at a time (module fixtures such as a built firmware
# project are made once): the long files (firmware, Pythia, the process-level pipeline runs)
# then overlap instead of queueing, which keeps the whole suite, slow tests included,
# under 15 minutes on a 2-core machine.
# The tests build the same firmware sources many times over (a project verified by several
# tests, Verilator's runtime in every RTL build): g++ runs behind ccache (Debian puts its g++
# wrapper in /usr/lib/ccache) with a cache in build/ccache, which each checkout starts empty.
PYTEST_WORKERS ?= 2
CCACHE_ENV = PATH="$$([ -x /usr/lib/ccache/g++ ] && echo /usr/lib/ccache:)$$PATH" CCACHE_DIR="$(CURDIR)/build/ccache"
test: venv sysdeps
	$(CCACHE_ENV) $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: venv
	$(CCACHE_ENV) $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: venv
	$(PY) -m bench.run --out BENCHMARKS.md

# mypy reads the package through darktrigger/ (its links to the layer folders), as Python imports it.
lint: venv
	$(VENV)/bin/ruff check darktrigger/__init__.py darktrigger/__main__.py replay models firmware daq monitoring tests bench
	$(VENV)/bin/mypy -p darktrigger -p tests -p bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache demo-output
