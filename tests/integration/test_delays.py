"""Countdowns of any length on Redis, with real workers and a real Redis: 1,000 delays
from 1 s to 2 h run once, never early, never held long by a worker (must-show 1); a worker
restart with 500 pending delays (must-show 3); a 3-day countdown, listed and cancelled
(must-show 4)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import redis

from celery_kit.delays.mover import Mover
from celery_kit.testing import RedisServer, wait_until
from celery_kit.topology.delays import due_epoch
from tests.integration.support.delays import (
    APP,
    APPS,
    Clock,
    delayed_ids,
    delays_env,
    kit_cli,
    producer,
    queued_ids,
    runs,
)

pytestmark = pytest.mark.timeout(300)

#: delays.mover_interval_s (0.2 s, support.delays) + 3 s
THRESHOLD_S = 3.2


@pytest.fixture
def env(kit_redis_server: RedisServer, kit_redis_url: str) -> dict[str, str]:
    return delays_env(kit_redis_server.url(kit_redis_server.fresh_db()), kit_redis_url)


@pytest.fixture
def state(kit_redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(kit_redis_url) as client:
        client.delete("clock:offset")
        yield client
        client.delete("clock:offset")


def _publish(app: Any, token: str, eta: float) -> str:
    when = datetime.fromtimestamp(eta, timezone.utc)
    return str(app.send_task("kit_delays.record", args=[token], eta=when).id)


def _log_spread(n: int, low: float, high: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [math.exp(rng.uniform(math.log(low), math.log(high))) for _ in range(n)]


def _due_at(eta: float, steps: list[tuple[float, float]]) -> float:
    """Real time at which the delay clock first reached ``eta``; ``steps`` are
    (real time the offset was set, offset), in order."""
    for i, (at, offset) in enumerate(steps):
        end = steps[i + 1][0] if i + 1 < len(steps) else math.inf
        if at - offset >= eta:
            return at
        if eta + offset < end:
            return eta + offset
    raise AssertionError(f"the clock never reached {eta}")


def _check(state: redis.Redis, etas: dict[str, float], steps: list[tuple[float, float]]) -> None:
    late = []
    for token, eta in etas.items():
        done = runs(state, token)
        assert len(done) == 1, (token, done)  # exactly once
        run = done[0]
        # never before its time: the delay clock at the run is past the ETA it carried
        assert run["clock"] >= due_epoch(run["eta"]), (token, run)
        late.append(run["real"] - _due_at(eta, steps))
    # none waited in a worker (reserved/scheduled) longer than the threshold after it was due
    assert max(late) <= THRESHOLD_S, sorted(late)[-5:]


def _scheduled_within_threshold(app: Any) -> int:
    replies = app.control.inspect(timeout=1.0).scheduled() or {}
    now = time.time()
    seen = 0
    for entries in replies.values():
        for entry in entries:
            seen += 1
            assert due_epoch(entry["eta"]) <= now + THRESHOLD_S, entry
    return seen


@pytest.mark.slow
def test_a_thousand_delays_from_one_second_to_two_hours(
    env: dict[str, str], state: redis.Redis, kit_worker: Any
) -> None:
    clock = Clock(state)
    offset = 2 * 3600 + 60.0
    clock.set_offset(offset)
    steps = [(time.time(), offset)]
    kit_worker(APP, env=env, pythonpath=[APPS], pool="threads", concurrency=8)
    app = producer(env, clock)
    app.conf.result_backend = "disabled"  # runs are recorded by the task itself
    # Given 850 ETAs 30 s to 2 h ahead of the delay clock (which runs 2 h behind)
    start = clock()
    etas = {f"v{i}": start + d for i, d in enumerate(_log_spread(850, 30, 7200, seed=13))}
    for token, eta in etas.items():
        _publish(app, token, eta)
    assert len(delayed_ids(app)) == 850
    # When the clock is moved forward in 4-minute steps until it is real time again
    while offset > 0:
        offset = max(0.0, offset - 240)
        clock.set_offset(offset)
        steps.append((time.time(), offset))
        time.sleep(0.3)
        if len(steps) % 10 == 0:
            _scheduled_within_threshold(app)
    wait_until(lambda: all(state.exists(f"runs:{t}") for t in etas), timeout_s=60, what="runs")
    # And 150 real countdowns from 1 s to 20 s (the short ones go straight to the queue)
    now = time.time()
    short = {f"r{i}": now + d for i, d in enumerate(_log_spread(150, 1, 20, seed=31))}
    for token, eta in short.items():
        _publish(app, token, eta)
    _scheduled_within_threshold(app)
    wait_until(lambda: all(state.exists(f"runs:{t}") for t in short), timeout_s=60, what="runs")
    # Then every task ran exactly once, never early, never held long by the worker
    _check(state, {**etas, **short}, steps)
    assert delayed_ids(app) == []
    app.close()


@pytest.mark.slow
def test_a_worker_restart_with_500_pending_delays(
    env: dict[str, str], state: redis.Redis, kit_worker: Any
) -> None:
    app = producer(env)
    app.conf.result_backend = "disabled"
    with redis.Redis.from_url(env["CELERY_BROKER_URL"]) as broker:
        # Given 500 countdowns from 5 s to 25 s and a worker running them
        now = time.time()
        etas = {f"w{i}": now + 5 + 20 * i / 500 for i in range(500)}
        due_of = {_publish(app, token, eta): eta for token, eta in etas.items()}
        first = kit_worker(APP, env=env, pythonpath=[APPS], pool="threads", concurrency=4)
        wait_until(lambda: state.exists("runs:w50"), timeout_s=30, what="the first runs")
        # When it stops (warm shutdown) and nothing runs for a while
        first.terminate()
        stopped = time.time()
        pending = set(delayed_ids(app))
        time.sleep(3)
        # Then nothing rushed into the queue: what was not due is still in the delay set
        queued = set(queued_ids(broker))
        assert pending
        assert pending == set(delayed_ids(app))
        assert all(due_of[i] <= stopped for i in queued), "a task not yet due was queued"
        # And with a new worker (prefork this time) every task runs once, never early
        kit_worker(APP, env=env, pythonpath=[APPS], pool="prefork", concurrency=2)
        restarted = time.time()
        wait_until(lambda: all(state.exists(f"runs:{t}") for t in etas), timeout_s=60, what="runs")
    for token, eta in etas.items():
        done = runs(state, token)
        assert len(done) == 1, (token, done)
        assert done[0]["real"] >= due_epoch(done[0]["eta"]), (token, done)
        # on time: due while no worker ran -> soon after the restart; else soon after due
        assert done[0]["real"] - max(eta, restarted) <= THRESHOLD_S + 1.0, (token, done, eta)
    app.close()


def test_a_three_day_countdown_is_accepted_listed_and_cancelled(
    env: dict[str, str], state: redis.Redis
) -> None:
    app = producer(env)
    result = app.send_task("kit_delays.record", args=["3d"], countdown=3 * 24 * 3600)
    task_id = result.id
    del result
    assert kit_cli(env, "delays", "count").stdout.strip() == "1"
    listed = kit_cli(env, "delays", "list")
    assert task_id in listed.stdout, listed
    shown = kit_cli(env, "delays", "show", task_id)
    assert "kit_delays.record" in shown.stdout, shown
    assert "due_in_s: 2591" in shown.stdout or "due_in_s: 2592" in shown.stdout, shown.stdout
    cancelled = kit_cli(env, "delays", "cancel", task_id)
    assert cancelled.returncode == 0, cancelled
    assert app.backend.get_task_meta(task_id)["status"] == "REVOKED"
    again = kit_cli(env, "delays", "cancel", task_id)
    assert again.returncode != 0
    assert "no delayed task" in again.stderr
    # the cancelled task never reaches a queue, even four days later
    mover = Mover(app, clock=lambda: time.time() + 4 * 24 * 3600)
    assert mover.step() == 0
    mover.stop()
    with redis.Redis.from_url(env["CELERY_BROKER_URL"]) as broker:
        assert queued_ids(broker) == []
    app.backend.result_consumer.stop()
    app.close()
