"""The control for the priority tests: plain Celery with its own defaults, no celery_kit.

Broker and result backend from ``CELERY_BROKER_URL``/``CELERY_RESULT_BACKEND``, the queue
from ``KIT_TEST_QUEUE``; tasks record in Redis at ``KIT_TEST_STATE_URL``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery

app = Celery("plain_topology")
app.conf.broker_url = os.environ["CELERY_BROKER_URL"]
app.conf.result_backend = os.environ["CELERY_RESULT_BACKEND"]
app.conf.broker_connection_retry_on_startup = True
app.conf.task_default_queue = os.environ["KIT_TEST_QUEUE"]


def state() -> redis.Redis:
    return redis.Redis.from_url(os.environ["KIT_TEST_STATE_URL"])


@app.task(name="topo.backlog")
def backlog() -> None:
    state().incr("backlog:started")


@app.task(name="topo.probe", bind=True)
def probe(self: Any, tag: str) -> dict[str, Any]:
    r = state()
    record = {
        "queue": (self.request.delivery_info or {}).get("routing_key"),
        "priority": (self.request.delivery_info or {}).get("priority"),
        "backlog_started": int(r.get("backlog:started") or 0),
    }
    r.set(f"probe:{tag}", json.dumps(record))
    return record
