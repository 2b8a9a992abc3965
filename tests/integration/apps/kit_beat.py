"""App for the beat tests: schedule from the TOML at ``CELERY_KIT_CONFIG``; every run is
recorded (slot header, start time, pid, runs in progress) in Redis at ``KIT_TEST_STATE_URL``,
which is never the Redis the tests restart."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

from celery_kit import make_app

app = make_app("kit_beat")


def state() -> redis.Redis:
    return redis.Redis.from_url(os.environ["KIT_TEST_STATE_URL"])


@app.task(name="kit_beat.tick", bind=True)
def tick(self: Any, label: str, sleep_s: float = 0.0) -> None:
    """Record one run; ``running`` is how many runs of ``label`` were in progress."""
    r = state()
    headers = self.request.headers or {}
    running = int(r.incr(f"running:{label}"))
    try:
        record = {
            "slot": headers.get("kit_beat_slot"),
            "entry": headers.get("kit_beat_entry"),
            "start": time.time(),
            "pid": os.getpid(),
            "running": running,
        }
        r.rpush(f"runs:{label}", json.dumps(record))
        time.sleep(sleep_s)
    finally:
        r.decr(f"running:{label}")
