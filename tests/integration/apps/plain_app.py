"""A plain Celery app (no celery_kit) for the harness tests; broker and backend come from env."""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery("plain_app")
# shared=False below: a shared task (Celery's default) is added to every app finalized later
# in the same process, which leaks these tasks into unrelated apps in the test run.
app.conf.broker_url = os.environ["CELERY_BROKER_URL"]
app.conf.result_backend = os.environ["CELERY_RESULT_BACKEND"]
app.conf.broker_connection_retry_on_startup = True


@app.task(name="plain_app.add", shared=False)
def add(x: int, y: int) -> int:
    """Return ``x + y``."""
    return x + y


@app.task(name="plain_app.pid", shared=False)
def pid() -> int:
    """Return the pid of the process running the task."""
    return os.getpid()


@app.task(name="plain_app.sleep", shared=False)
def sleep(seconds: float) -> float:
    """Sleep ``seconds`` and return it."""
    time.sleep(seconds)
    return seconds
