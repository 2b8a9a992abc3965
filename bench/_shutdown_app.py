"""Worker app of bench.shutdown: settings from ``CELERY_KIT_CONFIG``; starts and ends in Redis."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

from celery_kit import make_app

app = make_app("bench_shutdown")


@app.task(name="shutdown.work", bind=True)
def work(self: Any, key: str, first_s: float, again_s: float) -> None:
    """Sleep ``first_s`` on the first start of ``key``, ``again_s`` on later ones."""
    r = redis.Redis.from_url(os.environ["BENCH_STATE_URL"])
    starts = r.rpush(f"starts:{key}", json.dumps([self.request.hostname, time.time()]))
    time.sleep(first_s if starts == 1 else again_s)
    r.rpush(f"done:{key}", json.dumps([self.request.hostname, time.time()]))
