# Two commands do everything: `make demo` and `make test`. Both start with `make setup`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup check test test-fast demo bench bench-fleet clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@bash scripts/setup-system.sh
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: check
	bash scripts/run-tests.sh

test-fast: setup
	$(BIN)/pytest -q -x tests/unit

demo: setup
	$(BIN)/denen demo --dir .demo --port 8000

bench: setup
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/access.py
	$(BIN)/python bench/calls.py
	$(BIN)/python bench/telemetry.py
	$(BIN)/python bench/snapshots.py

bench-fleet: setup
	$(BIN)/python bench/fleet.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
