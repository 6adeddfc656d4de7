# `make run` and `make test` do all set-up on a fresh machine (Python >= 3.11, Node 20 + npm).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := tests/interop/node_modules/.installed
WEB_DEPS_STAMP := web/node_modules/.installed
# The browser client is built, not committed: web/dist/ follows from web/src/ and
# web/package-lock.json, and is rebuilt whenever either changes.
WEB_STAMP := web/dist/.built
WEB_SOURCES := web/build.mjs $(shell find web/src -type f 2>/dev/null)

.PHONY: install run test lint format lock docs clean bench bench-quick

install: $(PY_STAMP) $(NODE_STAMP) $(WEB_STAMP)

# Python packages exactly as locked (requirements.lock: the dependencies, the
# postgres and cluster extras and dev, all pinned), then collab itself on top.
$(PY_STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Regenerate requirements.lock from pyproject.toml's ranges after changing them.
# Pins already in the lock are kept where they still fit; to move everything
# to the newest releases: make lock LOCK_ARGS=--upgrade
lock: $(PY_STAMP)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet \
		--extra=dev --extra=postgres --extra=cluster --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
		$(LOCK_ARGS) --output-file=requirements.lock pyproject.toml

# The real npm Yjs client for the interoperability tests, exactly as locked.
$(NODE_STAMP): tests/interop/package.json tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund
	touch $@

# The browser client's npm packages, exactly as locked, and its esbuild bundle.
$(WEB_DEPS_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

$(WEB_STAMP): $(WEB_DEPS_STAMP) $(WEB_SOURCES)
	cd web && npm run --silent build
	touch $@

run: $(PY_STAMP) $(WEB_STAMP)
	$(BIN)/collab serve

test: install
	$(BIN)/pytest

# Benchmarks (never part of `make test`): collab vs. the peers, see bench/README.md.
# bench/run.py sets up bench/.venv and bench/node/node_modules itself on first use.
bench: $(PY_STAMP)
	$(PYTHON) bench/run.py $(BENCH_ARGS)

bench-quick: $(PY_STAMP)
	$(PYTHON) bench/run.py --quick $(BENCH_ARGS)

# Lint and static types: ruff, then mypy --strict over collab/ ([tool.mypy] in
# pyproject.toml), then tsc over the browser client's JSDoc (web/tsconfig.json).
lint: $(PY_STAMP) $(WEB_DEPS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	cd web && npm run --silent typecheck

format: $(PY_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# docs/configuration.md is rendered from the settings definitions (collab/config/);
# tests/unit/test_configuration_docs.py fails until the regenerated page is committed.
docs: $(PY_STAMP)
	$(BIN)/python -m collab.cli.reference docs/configuration.md

clean:
	rm -rf $(VENV) tests/interop/node_modules web/node_modules web/dist .pytest_cache .ruff_cache \
		.mypy_cache \
		bench/.venv bench/node/node_modules
