"""The global rate limit across 4 worker processes (must-show 4)."""

from __future__ import annotations

import bisect

import pytest
import redis

from celery_kit.coordination.ratelimit import RateLimiter
from tests.integration.support.reliability import APP, APPS, kit_env, producer

pytestmark = pytest.mark.timeout(120)

RATE, BURST, TASKS = 10.0, 10, 60  # "10/s": the bucket holds 10


def most_in_window(times: list[float], width_s: float) -> int:
    """The largest number of ``times`` inside any window [t, t + width_s]."""
    return max(bisect.bisect_right(times, t + width_s) - i for i, t in enumerate(times))


def test_four_processes_stay_within_the_global_rate(kit_redis_url: str, kit_worker) -> None:
    # Given one worker with 4 processes (Celery's own rate_limit would allow 4x per node)
    env = kit_env(kit_redis_url, kit_redis_url)
    kit_worker(APP, env={**env, "KIT_TEST_RATE": "10/s"}, pythonpath=[APPS], concurrency=4)
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    # When 60 rate-limited no-ops are queued at once
    results = [app.send_task("kit_reliability.rated", args=[i]) for i in range(TASKS)]
    assert sorted(r.get(timeout=60) for r in results) == list(range(TASKS))
    # Then, counted from the recorded start times, no window of W seconds holds more than
    # one bucket + RATE x W starts. (+1: a start is recorded a few ms after its token was
    # taken, which can move one start across a window edge.)
    times = sorted(float(t) for t in state.lrange("rated:starts", 0, -1))
    assert len(times) == TASKS
    for width in (0.5, 1.0, 2.0, 3.0, times[-1] - times[0]):
        assert most_in_window(times, width) <= BURST + RATE * width + 1, width
    # and over the whole run the average rate is at most RATE (+ one bucket)
    span = times[-1] - times[0]
    assert BURST + RATE * span + 1 >= TASKS


def test_deferrals_do_not_use_up_retries(kit_redis_url: str, kit_worker) -> None:
    env = kit_env(kit_redis_url, kit_redis_url)
    worker = kit_worker(APP, env={**env, "KIT_TEST_RATE": "2/s"}, pythonpath=[APPS], concurrency=2)
    app = producer(env)
    # Celery's default max_retries is 3: 10 tasks at 2/s are deferred more often than that
    results = [app.send_task("kit_reliability.rated", args=[i]) for i in range(10)]
    assert sorted(r.get(timeout=60) for r in results) == list(range(10))
    assert worker.log_text().count("global rate limit") >= 4


def test_bucket_admits_a_burst_then_hands_out_spread_slots(kit_redis_url: str) -> None:
    limiter = RateLimiter("unit", "10/s", client=redis.Redis.from_url(kit_redis_url))
    assert [limiter.try_acquire(max_wait_s=10) for _ in range(10)] == [0.0] * 10
    waits = [limiter.try_acquire(max_wait_s=10) for _ in range(5)]
    assert all(w > 0 for w in waits)
    # each caller told to wait gets a later slot than the previous one
    assert waits == sorted(waits)
    assert waits[-1] - waits[0] >= 0.35
    assert limiter.try_acquire(max_wait_s=0.2) <= 0.2
