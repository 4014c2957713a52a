# Two entry points: `make demo` (whole pipeline on the synthetic demo cohort) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA_ROOT ?= ./dsan-data
# demo (minutes on 2 CPU cores) or demo-gpu (same cohort, a VB-Net budget for a CUDA GPU).
PROFILE ?= demo
# torch is pinned here (pyproject.toml allows >=2.4): set TORCH_PIN for another build.
TORCH_PIN ?= torch==2.13.0

.PHONY: install demo test lint bench clean

# Installed packages no dsan process imports (a check on 2026-12-08: every process of
# `make test`), and the packages' own test folders: not compiled (~8 s).
NO_COMPILE := /site-packages/((pip|setuptools|pkg_resources|networkx|apprise|dateparser)/|(.+/)?tests?/)

# uv installs what pip would (the same versions; checked on 2026-12-08), with its
# downloads and unpacking in parallel: 19 s against pip's 47 s with empty caches, 3 s
# against 31 s with warm ones. uv reads no pip.conf, so pip's find-links (where a machine
# keeps its torch build) are passed on, and it trusts the system's certificates, as pip
# does (a proxy's own CA included). Should uv fail, pip does the install.
FIND_LINKS := $(foreach d,$(PIP_FIND_LINKS),--find-links $(d))
PIP_INSTALL = UV_NATIVE_TLS=1 $(BIN)/uv pip install -q --python $(BIN)/python $(FIND_LINKS) $(1) \
	|| $(BIN)/python -m pip install -q --no-compile $(1)

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "uv>=0.5" || true
	$(call PIP_INSTALL,-e ".[test]" "$(TORCH_PIN)")
	# The byte code pip would compile on one core, on all of them, less NO_COMPILE. As
	# with pip, files written for a newer Python (3.12 syntax in torch and whenever)
	# stay uncompiled.
	$(BIN)/python -m compileall -q -q -j 0 -x '$(NO_COMPILE)' $(VENV)/lib || true
	touch $@

install: $(BIN)/.installed

$(BIN)/.lint-installed: $(BIN)/.installed
	$(call PIP_INSTALL,-e ".[dev]" "$(TORCH_PIN)")
	touch $@

demo: install
	$(BIN)/dsan synth --profile $(PROFILE) --out $(DATA_ROOT)/synthetic-cohort
	$(BIN)/dsan run --profile $(PROFILE) --dicom-root $(DATA_ROOT)/synthetic-cohort/dicom \
		--labels $(DATA_ROOT)/synthetic-cohort/labels.csv \
		--masks $(DATA_ROOT)/synthetic-cohort/masks --data-root $(DATA_ROOT)
	$(BIN)/dsan report --data-root $(DATA_ROOT)

# Two pytest-xdist workers; the tests sharing one session chain (pipeline_root,
# prepared_root) stay on one worker (tests/conftest.py). Plain `pytest` works too.
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: $(BIN)/.lint-installed
	$(BIN)/ruff check .
	$(BIN)/mypy

bench-install: install
	$(call PIP_INSTALL,-e ".[dev,bench]" "$(TORCH_PIN)")

clean:
	rm -rf $(VENV) $(DATA_ROOT)
