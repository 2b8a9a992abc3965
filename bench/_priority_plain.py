"""bench.priority worker app with plain Celery's defaults (queue from ``BENCH_QUEUE``)."""

from __future__ import annotations

import os

from celery import Celery

from bench._priority_tasks import register

app = Celery("bench_priority_plain", broker=os.environ["CELERY_BROKER_URL"])
app.conf.task_default_queue = os.environ["BENCH_QUEUE"]
app.conf.broker_connection_retry_on_startup = True
register(app)
