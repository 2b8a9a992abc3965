# Everything runs from a local virtualenv; a machine with only python3 is enough.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Django Tasks (django.tasks) needs Django >= 6, hence Python >= 3.12. The main venv keeps
# $(PYTHON) (the package supports 3.10+); a second venv, built with the newest interpreter
# >= 3.12 found (tools/find_python.py; override with DJ6_PYTHON=...), runs only the Django
# Tasks tests. DJANGO_SPEC picks the Django release: `make test-django6 DJANGO_SPEC='django~=6.0.0'`.
DJ6_VENV    ?= .venv-dj6
DJ6_PYTHON  ?= $(shell $(PYTHON) tools/find_python.py 3.12)
DJANGO_SPEC ?= django>=6
DJ6_STAMP   := $(DJ6_VENV)/.installed
DJ6_TESTS   := tests/unit/integrations/test_django_tasks.py tests/integration/test_django_tasks.py

# Test processes run side by side (pytest-xdist): most integration tests wait on real
# workers, timeouts and restarts rather than on the CPU, so three at once finish in less than
# half the time of one, even on two cores. `make test PYTEST_WORKERS=0` runs them in one
# process (each xdist worker starts its own redis-server).
PYTEST_WORKERS ?= 3
PYTEST_PAR := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist worksteal)

.PHONY: install lint typecheck test test-deps unit integration test-django6 demo bench bench-profile clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check celery_kit tests bench examples tools
	$(VENV)/bin/ruff format --check celery_kit tests bench examples tools
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy celery_kit

## make test-deps: tools the tests use beyond Python, from Debian: prometheus (promtool and
## the server the render tests start), chromium (the Flower login in a real browser) and
## nginx (the documented proxy rule). Installed when missing and we are root with apt-get;
## otherwise those tests skip with the reason (and fail under CI).
TEST_TOOLS := promtool:prometheus prometheus:prometheus chromium:chromium nginx:nginx-light
test-deps:
	@missing=""; for pair in $(TEST_TOOLS); do 		tool=$${pair%%:*}; pkg=$${pair#*:}; 		command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $$pkg"; 	done; 	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); 	if [ -z "$$(echo $$missing | tr -d ' ')" ]; then :; 	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then 		echo "test-deps: installing Debian's $$missing"; 		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; 	else 		echo "test-deps: $$missing missing and not root with apt-get: their tests skip"; 	fi

## make test: everything CI runs (lint, types, unit, integration on private Redis + RabbitMQ)
test: lint typecheck test-deps
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_PAR)
	$(MAKE) --no-print-directory test-django6

$(DJ6_STAMP): pyproject.toml
	$(DJ6_PYTHON) -m venv $(DJ6_VENV)
	$(DJ6_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DJ6_VENV)/bin/python -m pip install --quiet -e '.[django-tasks,otel,json-logs,embedded-redis,test]' '$(DJANGO_SPEC)'
	touch $@

## make test-django6: the Django Tasks tests on Django 6 (skipped, loudly, without Python >= 3.12)
test-django6:
	@if [ -z "$(DJ6_PYTHON)" ]; then \
	  echo "SKIPPED: Django Tasks tests need Python >= 3.12 (Django 6); none found. Set DJ6_PYTHON=/path/to/python3.12+"; \
	  if [ -n "$${CI:-}" ]; then echo "failing: CI must run them"; exit 1; fi; \
	else \
	  $(MAKE) --no-print-directory $(DJ6_STAMP) && \
	  $(DJ6_VENV)/bin/python -m pip install --quiet --upgrade '$(DJANGO_SPEC)' && \
	  $(DJ6_VENV)/bin/python -m pytest -p no:cacheprovider $(DJ6_TESTS); \
	fi

unit: install test-deps
	$(PY) -m pytest -p no:cacheprovider tests/unit

integration: install test-deps
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_PAR) tests/integration

## make demo: a real worker on an embedded Redis (or $$CELERY_BROKER_URL), a few tasks, a report
demo: install
	$(PY) -m examples.demo

## make bench: kit vs plain Celery, side by side, results in bench/results/
## (BENCH=overhead runs one module; make bench-profile adds py-spy profiles to bench.overhead)
BENCH ?=
bench: install
	$(PY) -m bench $(BENCH)

bench-profile: install
	BENCH_PROFILE=1 $(PY) -m bench overhead

clean:
	rm -rf $(VENV) $(DJ6_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
