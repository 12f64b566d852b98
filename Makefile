# One command each: `make demo` sets up and runs the demo flow; `make check` sets up and
# runs every check (ruff, mypy --strict, import layers, the whole test suite).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo check lint test browser screenshots bench clean

setup: $(VENV)/.installed

# everything: ordo and the dev tools (tests, linters)
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed-run $@

# only what running ordo needs (make demo)
$(VENV)/.installed-run: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

demo: $(VENV)/.installed-run
	$(BIN)/ordo run examples/nightly-report/flow.yaml

lint: setup
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy src
	$(BIN)/lint-imports

test: setup browser
	$(BIN)/pytest -n 2 -q

browser:
	.ci/browser

# the UI's screenshots in docs/screenshots, taken by the browser tests
screenshots: setup browser
	ORDO_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/pytest -q -p no:randomly tests/integration/test_ui_browser.py

check: lint test

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
