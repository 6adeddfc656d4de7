# `make run` and `make test` do all set-up on a fresh machine (Python >= 3.11, Node 20 + npm).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := tests/interop/node_modules/.installed

.PHONY: install run test lint format clean bench bench-quick

install: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# The real npm Yjs client for the interoperability tests, exactly as locked.
$(NODE_STAMP): tests/interop/package.json tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund
	touch $@

run: $(PY_STAMP)
	$(BIN)/collab serve

test: install
	$(BIN)/pytest

# Benchmarks (never part of `make test`): collab vs. the peers, see bench/README.md.
# bench/run.py sets up bench/.venv and bench/node/node_modules itself on first use.
bench: $(PY_STAMP)
	$(PYTHON) bench/run.py $(BENCH_ARGS)

bench-quick: $(PY_STAMP)
	$(PYTHON) bench/run.py --quick $(BENCH_ARGS)

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(PY_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) tests/interop/node_modules .pytest_cache .ruff_cache bench/.venv bench/node/node_modules
