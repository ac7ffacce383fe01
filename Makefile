# `make test` and `make demo` bootstrap .venv on first use (and when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
KUSTOMIZE_VERSION := 5.5.0
KUSTOMIZE_SHA256 := 6703a3a70a0c47cf0b37694030b54f1175a9dfeb17b3818b623ed58b9dbc2a77

# Test workers (pytest-xdist): one per core by default; `make test WORKERS=0` runs in one process.
WORKERS ?= auto
PYTEST := $(PY) -m pytest -q -rs -n $(WORKERS) --dist worksteal

.PHONY: test test-fast demo lint venv clean kustomize bench bench-load
LINT := $(VENV)/bin/ruff check $(wildcard bot rules tests bench) && $(PY) -m mypy

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@$(MAKE) --no-print-directory kustomize
	touch $(STAMP)

# Kustomize is the renderer of record. Use what the machine has (KUSTOMIZE_BIN, kustomize, kubectl);
# only where none exists, install the pinned standalone release into .venv/bin, checksum verified.
kustomize:
	@if [ -n "$$KUSTOMIZE_BIN" ] || command -v kustomize >/dev/null || command -v kubectl >/dev/null; then :; else \
	  set -e; url=https://github.com/kubernetes-sigs/kustomize/releases/download/kustomize%2Fv$(KUSTOMIZE_VERSION)/kustomize_v$(KUSTOMIZE_VERSION)_linux_amd64.tar.gz; \
	  curl -fsSL "$$url" -o $(VENV)/kustomize.tgz; \
	  echo "$(KUSTOMIZE_SHA256)  $(VENV)/kustomize.tgz" | sha256sum -c -; \
	  tar -xzf $(VENV)/kustomize.tgz -C $(VENV)/bin kustomize; rm $(VENV)/kustomize.tgz; fi

# The whole suite, slow tests included. Tests over ../shared (conformance, corpus, peer fixtures) are
# skipped with a one-line reason when it is not beside the repository.
test: $(STAMP)
	$(LINT)
	$(PYTEST)

# The quick tier for contributors: everything but the tests marked `slow` (under two minutes).
test-fast: $(STAMP)
	$(LINT)
	$(PYTEST) -m "not slow"

demo: $(STAMP)
	$(PY) -m bot demo

lint: $(STAMP)
	$(LINT)

clean:
	rm -rf $(VENV) .pytest_cache

# Benchmarks print figures and write bench/RESULTS.md; they are never part of `make test`.
bench: $(STAMP)
	$(PY) -m bench.perf --write

# 2,000 signed deliveries at 200/s into the real service over loopback (figures printed, not written).
bench-load: $(STAMP)
	$(PY) -m bench.load
