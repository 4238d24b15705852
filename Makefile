# Every target bootstraps .venv itself: a fresh clone needs only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml clients/python/pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test bench openapi openapi-check lint clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]' -e clients/python
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)  ## the service, a worker and an embedded Redis, with dev credentials
	$(PY) -m service run

test: $(STAMP)  ## the whole suite (SQLite always; PostgreSQL when TIDINGS_TEST_DATABASE_URL is set)
	$(PY) -m pytest

bench: $(STAMP)  ## benchmarks (not tests): prints tables
	$(PY) -m bench

openapi: $(STAMP)  ## regenerate openapi/openapi.json from the app
	$(PY) -m service.openapi write

openapi-check: $(STAMP)
	$(PY) -m service.openapi check

lint: $(STAMP)  ## ruff over the service, workers, tests and benchmarks
	$(PY) -m pip install -q ruff
	$(PY) -m ruff check service workers tests bench

clean:
	rm -rf $(VENV) var .pytest_cache
