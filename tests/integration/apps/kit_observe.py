"""Worker app for the observability tests: metrics, heartbeat and progress.

Built by ``make_app`` from the environment; side effects go to ``KIT_TEST_STATE_URL``.
"""

from __future__ import annotations

import contextlib
import os
import time

import redis
from celery.exceptions import SoftTimeLimitExceeded

from celery_kit import make_app
from celery_kit.tasks.progress import progress

app = make_app("kit_observe")


def state() -> redis.Redis:
    return redis.Redis.from_url(os.environ["KIT_TEST_STATE_URL"])


@app.task(name="kit_observe.pid")
def pid(pause_s: float = 0.0) -> int:
    """Returns the pool process that ran it (after ``pause_s``: a busy child makes the
    main process hand the next task to another one)."""
    time.sleep(pause_s)
    return os.getpid()


@app.task(name="kit_observe.fail")
def fail() -> None:
    raise ValueError("boom")


@app.task(name="kit_observe.retry_once", bind=True, max_retries=3)
def retry_once(self, key: str) -> int:  # type: ignore[no-untyped-def]
    """Retries on its first attempt, succeeds on the second."""
    attempt = int(state().incr(f"attempts:{key}"))
    if attempt == 1:
        raise self.retry(countdown=0.2)
    return attempt


@app.task(name="kit_observe.hard_limited")
def hard_limited() -> None:
    """Ignores its soft limit: only the hard limit stops it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(SoftTimeLimitExceeded):
            time.sleep(0.1)


@app.task(name="kit_observe.die")
def die() -> None:
    """Its pool process exits mid-task (an OOM kill or a segfault would do the same)."""
    time.sleep(0.2)
    os._exit(1)


@app.task(name="kit_observe.hold")
def hold(key: str) -> None:
    """Records its pool process under ``key``, then runs until it is killed (or 60 s)."""
    state().set(key, os.getpid())
    time.sleep(60)


@app.task(name="kit_observe.steps")
def steps(n: int, pause_s: float) -> dict[str, int]:
    """Reports progress at each step, then returns."""
    for i in range(n):
        progress(step=f"step {i + 1}/{n}", current=i, total=n)
        time.sleep(pause_s)
    return {"done": n}
