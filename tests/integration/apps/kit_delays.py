"""Worker app for the delay-set tests: tasks record each run (real and delay-clock time).

Built by ``make_app`` from the environment. ``KIT_TEST_STATE_URL`` is a Redis that is not
the broker. The delay clock (publish route and mover) is real time minus the offset the
test keeps in that Redis under ``clock:offset``, so a test can move it forward by hours.
"""

from __future__ import annotations

import functools
import json
import os
import time

import redis
from celery import current_task

from celery_kit import make_app
from celery_kit.topology.delays import set_clock

app = make_app("kit_delays")


@functools.cache
def _state(pid: int) -> redis.Redis:
    return redis.Redis.from_url(os.environ["KIT_TEST_STATE_URL"])


def state() -> redis.Redis:
    """One client per process (a forked pool child makes its own)."""
    return _state(os.getpid())


def clock() -> float:
    """Real time minus ``clock:offset`` (seconds, default 0)."""
    return time.time() - float(state().get("clock:offset") or 0.0)


set_clock(app, clock)


@app.task(name="kit_delays.record", shared=False)
def record(token: str) -> str:
    """Record one run of ``token``: real time, delay-clock time, the ETA it carried."""
    request = current_task.request
    eta = request.eta.isoformat() if hasattr(request.eta, "isoformat") else request.eta
    row = {"real": time.time(), "clock": clock(), "eta": eta, "retries": request.retries}
    state().rpush(f"runs:{token}", json.dumps(row))
    return token


@app.task(name="kit_delays.retry_once", bind=True, shared=False, max_retries=3)
def retry_once(self, token: str, countdown: float) -> str:  # type: ignore[no-untyped-def]
    """Retry once with ``countdown`` (the retry is a delayed publish), then record."""
    state().rpush(f"runs:{token}", json.dumps({"retries": self.request.retries}))
    if self.request.retries == 0:
        raise self.retry(countdown=countdown)
    return token
