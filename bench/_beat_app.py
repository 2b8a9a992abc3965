"""App of bench.beat for beat and worker processes; every run records its times.

``BENCH_FLAVOUR``: ``kit`` (make_app, ``[beat]`` from ``CELERY_KIT_CONFIG``), ``plain``
(Celery's default file-based scheduler, same 1 s entry) or ``redbeat`` (plain Celery with
RedBeat as its README configures it).
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from typing import Any

import redis
from celery import Celery, signals

FLAVOUR = os.environ["BENCH_FLAVOUR"]

if FLAVOUR == "kit":
    from celery_kit import make_app

    app = make_app("bench_beat")
else:
    app = Celery("bench_beat", broker=os.environ["CELERY_BROKER_URL"])
    app.conf.update(
        beat_schedule={"tick": {"task": "bench.tick", "schedule": timedelta(seconds=1)}},
        beat_max_loop_interval=1,
    )
    if FLAVOUR == "redbeat":  # RedBeat as its README configures it, lock timeout 5 s
        app.conf.update(
            beat_scheduler="redbeat.RedBeatScheduler",
            redbeat_redis_url=os.environ["BENCH_BEAT_REDIS_URL"],
            redbeat_lock_timeout=5,
        )


@signals.before_task_publish.connect(weak=False, dispatch_uid="bench_beat.stamp")
def _stamp(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers["bench_published_at"] = time.time()


@app.task(name="bench.tick", bind=True)
def tick(self: Any) -> None:
    started = time.time()
    headers = self.request.headers or {}
    record = {
        "start": started,
        "published": headers.get("bench_published_at"),
        "slot": headers.get("kit_beat_slot"),
    }
    client = redis.Redis.from_url(os.environ["BENCH_STATE_URL"])
    client.rpush("bench:runs", json.dumps(record))
    client.close()
