# Everything runs from a local virtualenv; a machine with only python3 is enough.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install lint typecheck test unit integration demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check celery_kit tests bench examples
	$(VENV)/bin/ruff format --check celery_kit tests bench examples
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy celery_kit

## make test: everything CI runs (lint, types, unit, integration on private Redis + RabbitMQ)
test: lint typecheck
	$(PY) -m pytest -p no:cacheprovider

unit: install
	$(PY) -m pytest -p no:cacheprovider tests/unit

integration: install
	$(PY) -m pytest -p no:cacheprovider tests/integration

## make demo: a real worker on an embedded Redis (or $$CELERY_BROKER_URL), a few tasks, a report
demo: install
	$(PY) -m examples.demo

## make bench: kit vs plain Celery, side by side, results in bench/results/
bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
