# The two commands of the README: `make reproduce` and `make test`. Both set up from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= cpu

.PHONY: install reproduce docs bench bench-cluster test check nbtest pytest clean-venv

install: $(VENV)/.installed

$(VENV)/.installed: settings.ini setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned, so nothing later pulls a CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# the versions the committed results were made with (constraints.txt); the library's own ranges stay loose
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip check
	touch $@

reproduce: install
	$(BIN)/tpv reproduce --profile $(PROFILE)

# the documentation site, from the notebooks as stored, into _site/ (open it: python -m http.server -d _site)
docs: install
	$(BIN)/python docs/build.py

# tpv against PEFT + the HF Trainer on this machine -> benchmarks/RESULTS.md
bench: install
	$(BIN)/python benchmarks/bench.py

# the Dask path against in-process (overhead per unit, the smoke profile on local:2) -> its section of RESULTS.md
bench-cluster: install
	$(BIN)/python benchmarks/cluster_bench.py

check: install
	bash .ci/check_sync $(BIN)
	$(BIN)/python .ci/check_outputs.py
	# the exported code: ruff, lines of at most 120 characters, no statements joined with `;`
	$(BIN)/python .ci/lint.py

nbtest: install
	$(BIN)/nbdev_test

pytest: install
	$(BIN)/python -m pytest tests

test: check nbtest pytest

clean-venv:
	rm -rf $(VENV)
