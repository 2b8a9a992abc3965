"""Worker app for the malformed-message tests: a no-op that records itself, a task that
kills its whole worker, and (with ``KIT_TEST_LATE_TASK=1``) a task an older deploy lacked.

Tasks record what happened in Redis at ``KIT_TEST_STATE_URL``.
"""

from __future__ import annotations

import os
import signal
import time

import redis

from celery_kit import make_app

app = make_app("kit_envelope")


def state() -> redis.Redis:
    return redis.Redis.from_url(os.environ["KIT_TEST_STATE_URL"])


@app.task(name="kit_envelope.ok", shared=False)
def ok(key: str, i: int) -> int:
    """Record that good task ``i`` of ``key`` ran."""
    state().sadd(f"done:{key}", i)
    return i


@app.task(name="kit_envelope.kill_worker", shared=False)
def kill_worker(key: str) -> None:
    """SIGKILL the worker's main process (not just this pool process), every time."""
    state().incr(f"runs:{key}")
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(30)  # orphaned now; the test stops the whole process group


if os.environ.get("KIT_TEST_LATE_TASK") == "1":

    @app.task(name="kit_envelope.late", shared=False)
    def late(x: int) -> int:
        """Only registered by the "fixed" deploy."""
        return x * 2
