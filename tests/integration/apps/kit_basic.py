"""Worker app for the foundation tests: built by make_app from the environment.

Task side effects are recorded in Redis at ``KIT_TEST_STATE_URL`` so tests can count runs
whatever the broker is.
"""

from __future__ import annotations

import os
import time

import redis
from celery.exceptions import SoftTimeLimitExceeded

from celery_kit import make_app

app = make_app("kit_basic")


def state() -> redis.Redis:
    return redis.Redis.from_url(os.environ["KIT_TEST_STATE_URL"])


@app.task(name="kit_basic.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="kit_basic.record_and_sleep")
def record_and_sleep(key: str, seconds: float) -> int:
    """Count an attempt, publish our pid, sleep, count a completion."""
    r = state()
    attempt = int(r.incr(f"attempts:{key}"))
    r.rpush(f"pids:{key}", os.getpid())
    time.sleep(seconds)
    r.incr(f"done:{key}")
    return attempt


@app.task(name="kit_basic.soft_limited")
def soft_limited(key: str) -> str:
    try:
        time.sleep(60)
    except SoftTimeLimitExceeded:
        state().set(f"soft:{key}", "caught")
        return "cleaned up"
    return "not interrupted"


@app.task(name="kit_basic.hard_limited")
def hard_limited(key: str) -> None:
    """Ignores the soft limit, so only the hard limit can stop it."""
    state().incr(f"attempts:{key}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            time.sleep(0.2)
        except SoftTimeLimitExceeded:
            state().set(f"soft:{key}", "ignored")


@app.task(name="kit_basic.retry_too_late", bind=True)
def retry_too_late(self, seconds: float) -> str:
    """Asks for a retry far beyond tasks.max_countdown_s and reports what it could catch."""
    from celery_kit import CountdownTooLongError

    try:
        self.retry(countdown=seconds)
    except CountdownTooLongError as exc:
        return f"caught {type(exc).__name__}"
    return "retry accepted"
