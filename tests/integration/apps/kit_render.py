"""Worker app for the render tests: settings from ``CELERY_KIT_CONFIG`` and the environment.

Tasks record each start and finish in Redis at ``KIT_TEST_STATE_URL`` (hostname, time), so
tests see which worker ran what, whatever the broker is.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

from celery_kit import make_app

app = make_app("kit_render")


def state() -> redis.Redis:
    return redis.Redis.from_url(os.environ["KIT_TEST_STATE_URL"])


@app.task(name="render.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="render.fail")
def fail() -> None:
    raise ValueError("a failure for the failure panels")


@app.task(name="render.long", bind=True)
def long(self: Any, key: str, first_s: float, again_s: float) -> str:
    """Sleep ``first_s`` on the first start, ``again_s`` on every later one."""
    r = state()
    starts = r.rpush(f"starts:{key}", json.dumps([self.request.hostname, time.time()]))
    time.sleep(first_s if starts == 1 else again_s)
    r.rpush(f"done:{key}", json.dumps([self.request.hostname, time.time()]))
    return str(self.request.hostname)
