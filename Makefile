# The two commands of the README: `make demo` and `make test`. Both bootstrap what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
# The product venv with the bench extra (matplotlib, for the plots): `make bench` only.
BENCH_STAMP := $(VENV)/.bench-installed
NODE_STAMP := node_modules/.installed
# The web page's Web PubSub client: @azure/web-pubsub-client bundled for browsers (served at /lib/web-pubsub-client.js).
WPS_BUNDLE := node_modules/.bundles/web-pubsub-client.js
PYTEST_ARGS ?=

.PHONY: demo test lint format venv node browser clean bench bench-peers fuzz

demo: $(PY_STAMP) $(NODE_STAMP) $(WPS_BUNDLE)
	$(BIN)/chat-demo

test: $(PY_STAMP) $(NODE_STAMP) $(WPS_BUNDLE) browser lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict signalr webpubsub emulator gateway server chat bench flow

format: $(PY_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(PY_STAMP) $(BENCH_STAMP) $(NODE_STAMP) bench-peers
	$(BIN)/python -m bench

# The peers bench.fanout measures against, each in its own venv (never the product's, never by `make test`), each
# with uvloop, so that they run on the same event loop as the product's servers.
PEER_VENVS := bench/.venvs
UVLOOP_PIN := 'uvloop==0.23.0'
bench-peers: $(PEER_VENVS)/websockets/.installed $(PEER_VENVS)/aiosignalr/.installed

$(PEER_VENVS)/websockets/.installed: Makefile
	test -x $(PEER_VENVS)/websockets/bin/python || $(PYTHON) -m venv $(PEER_VENVS)/websockets
	$(PEER_VENVS)/websockets/bin/python -m pip install --quiet 'websockets==17.4' $(UVLOOP_PIN)
	touch $@

$(PEER_VENVS)/aiosignalr/.installed: Makefile
	test -x $(PEER_VENVS)/aiosignalr/bin/python || $(PYTHON) -m venv $(PEER_VENVS)/aiosignalr
	$(PEER_VENVS)/aiosignalr/bin/python -m pip install --quiet 'aiosignalr==0.1.1' $(UVLOOP_PIN)
	touch $@

# The fuzz targets of tests/fuzz with a large budget (make test runs them with a small one).
FUZZ_EXAMPLES ?= 20000
fuzz: $(PY_STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/fuzz -p no:cacheprovider $(PYTEST_ARGS)

venv: $(PY_STAMP)
node: $(NODE_STAMP) $(WPS_BUNDLE)

$(PY_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,fast]'
	touch $@

$(BENCH_STAMP): $(PY_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,fast,bench]'
	touch $@

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --no-package-lock
	touch $@

# One IIFE that puts WebPubSubClient and its two JSON protocols on `window` (the package ships only ES modules).
# Rebuilt whenever package.json (hence the installed package) changes.
$(WPS_BUNDLE): package.json $(NODE_STAMP)
	mkdir -p $(@D)
	echo 'import { WebPubSubClient, WebPubSubJsonProtocol, WebPubSubJsonReliableProtocol } from "@azure/web-pubsub-client";' \
		'Object.assign(window, { WebPubSubClient, WebPubSubJsonProtocol, WebPubSubJsonReliableProtocol });' \
		| node_modules/.bin/esbuild --bundle --format=iife --platform=browser --target=es2020 --minify \
			--log-level=warning --outfile=$@

# Headless Chromium and its driver for the web-page tests (Debian packages).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		echo "installing chromium and chromium-driver"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
