"""bench.observability worker apps: the same no-op task on the kit and on plain Celery.

``BENCH_APP=plain`` builds a plain ``Celery`` app; otherwise the kit builds it from the
environment (``CELERY_KIT_LOGGING__*``, ``CELERY_KIT_TRACING__*``, ``OTEL_*``).
"""

from __future__ import annotations

import os

from celery import Celery

from celery_kit import make_app

if os.environ.get("BENCH_APP") == "plain":
    app = Celery("bench_obs", broker=os.environ["CELERY_BROKER_URL"])
    app.conf.broker_connection_retry_on_startup = True
    app.conf.task_default_queue = "default"  # the kit's default queue, so one backlog fits both
else:
    app = make_app("bench_obs")


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    """Does nothing: what is measured is the per-task cost around it."""
