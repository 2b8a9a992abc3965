"""Tasks shared by the bench.priority worker apps (kit and plain Celery)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from celery import Celery


def register(app: Celery) -> None:
    """Define ``bench.backlog`` and ``bench.probe`` on ``app``; state in ``BENCH_STATE_URL``."""
    client: list[redis.Redis] = []

    def state() -> redis.Redis:
        if not client:
            client.append(redis.Redis.from_url(os.environ["BENCH_STATE_URL"]))
        return client[0]

    @app.task(name="bench.backlog", shared=False)
    def backlog() -> None:
        state().incr("started")

    @app.task(name="bench.probe", shared=False)
    def probe(tag: str) -> None:
        started_at = time.time()
        r = state()
        record: dict[str, Any] = {"start": started_at, "before": int(r.get("started") or 0)}
        r.set(f"probe:{tag}", json.dumps(record))
