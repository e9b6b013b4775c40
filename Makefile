# The two commands: `make serve` and `make test`. Everything they need, they install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FILES_HOST ?= 127.0.0.1
export FILES_PORT ?= 8321

.PHONY: serve test lint deps test-deps system-test-deps clean tests bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# The command-line client (client/, a package of its own) is installed editable for its tests.
$(VENV)/.test-deps: requirements-test.txt client/pyproject.toml $(VENV)/.deps
	$(BIN)/pip install --quiet -r requirements-test.txt
	$(BIN)/pip install --quiet -e ./client
	touch $@

# JavaScript (tus-js-client, axe-core), exactly as package-lock.json pins it; the browser's copy of
# tus-js-client is served from static/vendor/.
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

static/vendor/tus.min.js: node_modules/.installed
	mkdir -p static/vendor
	cp node_modules/tus-js-client/dist/tus.min.js $@

deps: $(VENV)/.deps static/vendor/tus.min.js

# System tools the tests drive for real (curl, Debian's Chromium for Playwright, PostgreSQL's server
# for the tests' throwaway clusters); installed when missing.
system-test-deps:
	@command -v curl >/dev/null && test -x /usr/bin/chromium && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq curl chromium postgresql)

test-deps: $(VENV)/.test-deps static/vendor/tus.min.js system-test-deps

serve: deps
	$(BIN)/gunicorn -c gunicorn.conf.py app:app

# Files go to the two workers in the order tests/conftest.py gives (longest first), not by their
# number of tests (xdist's reorder put the few long tests of fuzzing and crash files last, alone);
# the slowest 25 are listed at the end.
test: test-deps
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=25 -q

$(VENV)/.bench-deps: bench/requirements.txt $(VENV)/.test-deps
	$(BIN)/pip install --quiet -r bench/requirements.txt
	touch $@

# BENCH_SIZE (bytes, default 1 GiB), BENCH_REPEATS (>= 3), BENCH_SMALL, BENCH_LIST scale it down or up.
bench: test-deps $(VENV)/.bench-deps
	$(BIN)/python bench/run.py

lint: test-deps
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
