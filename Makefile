# The two commands of the README's quick start are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STATE ?= .state
STAMP := $(VENV)/.installed
# the test extra builds libvirt-python, which needs Debian packages first
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install run test lint bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) pyproject.toml tools/system-packages.txt
	tools/ensure-system-packages
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

install: $(TEST_STAMP)

## Start drpd with the embedded store in ./.state (https://127.0.0.1:8092).
run: $(STAMP)
	$(BIN)/drpd serve --state-dir $(STATE)

## Install and run the whole test suite (and the linter and the type checker).
test: $(TEST_STAMP)
	tools/ensure-system-packages
	$(BIN)/ruff check drpd tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check drpd tests bench
	$(BIN)/mypy

## Every benchmark in full, then a summary (bench/results/*.json); bench-quick: CI-sized.
## bench/peer.py needs supervisord, bench/growth.py matplotlib: the `bench` extra,
## installed here if missing.
bench: $(TEST_STAMP)
	$(BIN)/python -c 'import supervisor, matplotlib' 2>/dev/null || $(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run_all.py

bench-quick: $(TEST_STAMP)
	$(BIN)/python -c 'import supervisor, matplotlib' 2>/dev/null || $(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run_all.py --quick

clean:
	rm -rf $(VENV) $(STATE) .pytest_cache .ruff_cache
