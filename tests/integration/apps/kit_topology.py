"""Worker app for the topology tests: topology from ``CELERY_KIT_CONFIG``, broker from env.

Tasks record what they saw (queue, priority, node, how many backlog tasks had started)
in Redis at ``KIT_TEST_STATE_URL``, so tests can check it whatever the broker is.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

from celery_kit import make_app

app = make_app("kit_topology")


def state() -> redis.Redis:
    return redis.Redis.from_url(os.environ["KIT_TEST_STATE_URL"])


def seen(request: Any) -> dict[str, Any]:
    info = request.delivery_info or {}
    return {
        "queue": info.get("routing_key"),
        "priority": info.get("priority"),
        "hostname": request.hostname,
    }


@app.task(name="topo.backlog")
def backlog() -> None:
    """One unit of backlog: counts its start."""
    state().incr("backlog:started")


@app.task(name="topo.probe", bind=True)
def probe(self: Any, tag: str) -> dict[str, Any]:
    """Record how many backlog tasks had started when this one started."""
    r = state()
    record = {**seen(self.request), "backlog_started": int(r.get("backlog:started") or 0)}
    r.set(f"probe:{tag}", json.dumps(record))
    return record


@app.task(name="topo.where", bind=True)
def where(self: Any) -> dict[str, Any]:
    """Return the queue, kit priority and node this task was delivered with."""
    return seen(self.request)


@app.task(name="topo.sleep", bind=True)
def sleep(self: Any, seconds: float) -> dict[str, Any]:
    state().incr("sleep:started")
    time.sleep(seconds)
    return seen(self.request)


@app.task(name="topo.retry_once", bind=True)
def retry_once(self: Any, key: str) -> list[Any]:
    """Record the delivered priority of each attempt; retry once."""
    r = state()
    r.rpush(f"attempts:{key}", json.dumps(seen(self.request)))
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return [json.loads(item) for item in r.lrange(f"attempts:{key}", 0, -1)]
