# The two commands of the README: `make demo` and `make test`. Both bootstrap what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint format venv node browser clean bench bench-peers fuzz

demo: $(PY_STAMP) $(NODE_STAMP)
	$(BIN)/chat-demo

test: $(PY_STAMP) $(NODE_STAMP) browser lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict signalr webpubsub emulator gateway server chat bench

format: $(PY_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(PY_STAMP) $(NODE_STAMP) bench-peers
	$(BIN)/python -m bench

# The peers bench.fanout measures against, each in its own venv (never the product's, never by `make test`).
PEER_VENVS := bench/.venvs
bench-peers: $(PEER_VENVS)/websockets/.installed $(PEER_VENVS)/aiosignalr/.installed

$(PEER_VENVS)/websockets/.installed: Makefile
	test -x $(PEER_VENVS)/websockets/bin/python || $(PYTHON) -m venv $(PEER_VENVS)/websockets
	$(PEER_VENVS)/websockets/bin/python -m pip install --quiet 'websockets==17.4'
	touch $@

$(PEER_VENVS)/aiosignalr/.installed: Makefile
	test -x $(PEER_VENVS)/aiosignalr/bin/python || $(PYTHON) -m venv $(PEER_VENVS)/aiosignalr
	$(PEER_VENVS)/aiosignalr/bin/python -m pip install --quiet 'aiosignalr==0.1.1'
	touch $@

# The fuzz targets of tests/fuzz with a large budget (make test runs them with a small one).
FUZZ_EXAMPLES ?= 20000
fuzz: $(PY_STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/fuzz -p no:cacheprovider $(PYTEST_ARGS)

venv: $(PY_STAMP)
node: $(NODE_STAMP)

$(PY_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --no-package-lock
	touch $@

# Headless Chromium and its driver for the web-page tests (Debian packages).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		echo "installing chromium and chromium-driver"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
