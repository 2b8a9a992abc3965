"""bench.transport worker app: a kit app (transport chosen by CELERY_KIT_BROKER__TRANSPORT)
with a no-op and a sleeping task."""

from __future__ import annotations

import time

from celery_kit import make_app

app = make_app("bench_transport")


@app.task(name="bench.noop", shared=False, ignore_result=True)
def noop(i: int) -> None:
    """The benchmarked task body."""


@app.task(name="bench.sleep", shared=False, ignore_result=True)
def sleep(token: str, seconds: float) -> None:
    """Record the start in the broker's db 15 (who, when), then sleep."""
    import os
    import socket

    import redis

    redis.Redis.from_url(os.environ["BENCH_MARK_URL"]).rpush(
        f"starts:{token}", f"{socket.gethostname()}|{os.getpid()}|{time.time()}"
    )
    time.sleep(seconds)
