# Everyday commands. `make test` is what CI runs (.ci/run).
PYTHON ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || ls -d $$(pyenv root 2>/dev/null)/versions/3.13.*/bin/python3.13 2>/dev/null | tail -1)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every dependency pinned with its hashes (scripts/lock writes it from pyproject.toml).
LOCK := requirements-dev.txt

.PHONY: ensure-services venv install lock upgrade run lint typecheck schema test test-unit clean clean-data console-check

# Python 3.13, Redis and Mosquitto installed (quiet when they are).
ensure-services:
	@scripts/ensure-services

venv: $(BIN)/python

$(BIN)/python: | ensure-services
	@test -n "$(PYTHON)" || { echo "make: no Python 3.13 found (pyenv install 3.13.0)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Installs exactly the lock (hashes checked), then the project itself without resolving
# anything; pip check fails when pyproject.toml wants what the lock lacks.
# Re-installs whenever pyproject.toml or the lock is newer than the last install.
install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK) | ensure-services $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

# Refresh the locks on purpose, then prove them: `make lock` keeps pins that still fit
# pyproject.toml, `make upgrade` moves every pin to the newest allowed release.
# (uv, which writes them, comes from the current lock: a pyproject.toml that asks for
# something new cannot pass `install` until the lock has it.)
lock upgrade: | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	scripts/lock $(if $(filter upgrade,$@),--upgrade)
	$(MAKE) --no-print-directory test

# The platform on embedded defaults; Ctrl-C stops what it started.
# SIMULATE=N also starts N simulated devices: `make run SIMULATE=5`.
# API=N and WORKERS=N scale out: `make run API=2 WORKERS=2` (APIs on 8000, 8001).
run: install
	$(BIN)/python -m devstack run $(if $(SIMULATE),--simulate $(SIMULATE)) \
		$(if $(API),--api $(API)) $(if $(WORKERS),--workers $(WORKERS))

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# Written to a temporary file first, so a failing export leaves schema.graphql alone.
schema: install
	$(BIN)/python -m graph.export > schema.graphql.tmp || { rm -f schema.graphql.tmp; exit 1; }
	mv schema.graphql.tmp schema.graphql

# The npm packages of the Node-driven tests (tests/system/browser: Playwright for Chromium,
# graphql-http's audits), exactly as package-lock.json has them; again when the lock is
# newer than the install. Not .PHONY: a file target does the work.
BROWSER_MODULES := tests/system/browser/node_modules/.package-lock.json

browser-deps: $(BROWSER_MODULES)

$(BROWSER_MODULES): tests/system/browser/package-lock.json tests/system/browser/package.json | ensure-services
	cd tests/system/browser && npm ci --no-audit --no-fund
	touch $@

# The console's vendored browser files (api/static/console/vendor, served as they are:
# no build step) against console/package-lock.json: npm ci there, then byte for byte.
console-check: | ensure-services
	scripts/vendor-console --check

# Redis and Mosquitto started if nothing answers, then lint, types and the tests.
test: install browser-deps console-check
	scripts/ensure-services --start
	$(MAKE) --no-print-directory lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

# The fast tier: tests that need no service (no broker, Redis, database or API), seconds.
test-unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache htmlcov .coverage .coverage.* *.egg-info
	find . -name __pycache__ -type d -not -path './.data/*' -prune -exec rm -rf {} +

# .data holds the development database: removed only on request.
clean-data:
	rm -rf .data
