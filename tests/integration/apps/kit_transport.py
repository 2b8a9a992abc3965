"""Worker app for the transport tests: tasks record runs in the state Redis.

Built by ``make_app`` from the environment (``CELERY_BROKER_URL``, ``CELERY_KIT_*``).
``KIT_TEST_STATE_URL`` is a Redis that is NOT the broker (the broker gets restarted).
"""

from __future__ import annotations

import functools
import os
import socket
import time
from typing import Any

import redis
from celery import current_task

from celery_kit import make_app

app = make_app("kit_transport")


@functools.cache
def state() -> redis.Redis:
    """One client per process (redis-py's pool starts afresh in a forked child)."""
    return redis.Redis.from_url(os.environ["KIT_TEST_STATE_URL"])


def _who() -> str:
    host = getattr(current_task.request, "hostname", None) or socket.gethostname()
    return f"{host}|{os.getpid()}|{time.time():.3f}"


@app.task(name="kit_transport.mark", shared=False)
def mark(token: str) -> str:
    """Record one run of ``token`` (who ran it, when)."""
    state().rpush(f"runs:{token}", _who())
    return token


@app.task(name="kit_transport.slow", shared=False)
def slow(token: str, seconds: float) -> str:
    """Record the start, sleep ``seconds``, record the end."""
    r = state()
    r.rpush(f"starts:{token}", _who())
    time.sleep(seconds)
    r.rpush(f"ends:{token}", _who())
    return token


@app.task(name="kit_transport.effect", shared=False, idempotency_key="effect:{n}")
def effect(n: int) -> int:
    """One tiny effect per ``n``, guarded by the kit's idempotency helper."""
    time.sleep(float(os.environ.get("KIT_TEST_EFFECT_SLEEP_S", "0")))
    state().hincrby("effects", str(n), 1)
    return n


@app.task(name="kit_transport.add", shared=False)
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="kit_transport.total", shared=False)
def total(values: list[Any]) -> int:
    return sum(int(v) for v in values)
