# Everything runs from a local virtualenv; a machine with only python3 is enough.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install lint typecheck test test-deps unit integration demo bench clean

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

## make test-deps: tools the tests use beyond Python: Debian's prometheus (promtool and the
## server the render tests start). Installed when missing and we are root with apt-get;
## otherwise those tests skip with the reason (and fail under CI).
test-deps:
	@if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "test-deps: installing Debian's prometheus (promtool)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; \
	else \
		echo "test-deps: promtool/prometheus missing and not root with apt-get: their tests skip"; \
	fi

## make test: everything CI runs (lint, types, unit, integration on private Redis + RabbitMQ)
test: lint typecheck test-deps
	$(PY) -m pytest -p no:cacheprovider

unit: install test-deps
	$(PY) -m pytest -p no:cacheprovider tests/unit

integration: install test-deps
	$(PY) -m pytest -p no:cacheprovider tests/integration

## make demo: a real worker on an embedded Redis (or $$CELERY_BROKER_URL), a few tasks, a report
demo: install
	$(PY) -m examples.demo

## make bench: kit vs plain Celery, side by side, results in bench/results/
bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
