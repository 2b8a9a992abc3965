"""Idempotency keys on real workers (must-show 2).

The body of ``kit_reliability.charge`` (idempotency_key="charge:{order_id}") counts its
starts and its completed effects in Redis, so the tests count what really ran.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
import redis
from celery import Celery

from celery_kit.testing import wait_until as wait_for
from tests.integration.support.reliability import APP, APPS, kit_env, producer

pytestmark = pytest.mark.timeout(150)

LEASE_S = 1.5


@pytest.fixture
def env(kit_redis_url: str) -> dict[str, str]:
    return kit_env(kit_redis_url, kit_redis_url, IDEMPOTENCY__LEASE_S=str(LEASE_S))


def count(client: redis.Redis, key: str) -> int:
    return int(client.get(key) or 0)


def producer_with_charge(env: dict[str, str]) -> tuple[Celery, Any]:
    """The test's app, declaring the task like the worker does (enqueue de-duplication
    happens in the publisher)."""
    app = producer(env)

    @app.task(
        name="kit_reliability.charge",
        shared=False,
        idempotency_key="charge:{order_id}",
        dedupe_enqueue=True,
    )
    def charge(order_id: str, sleep_s: float) -> None:
        raise AssertionError("runs on the worker only")

    return app, charge


def test_duplicate_deliveries_on_two_workers_run_the_body_once(
    env: dict[str, str], kit_redis_url: str, kit_worker
) -> None:
    # Given two workers with one process each
    workers = [kit_worker(APP, env=env, pythonpath=[APPS], concurrency=1) for _ in range(2)]
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    # When the same charge is delivered twice at once (two messages, as a producer
    # retrying its publish would send; send_task skips enqueue de-duplication)
    first = app.send_task("kit_reliability.charge", args=["o1", 2.0])
    second = app.send_task("kit_reliability.charge", args=["o1", 2.0])
    # Then both succeed with the one stored result, and the body ran once
    assert first.get(timeout=60) == second.get(timeout=60)
    assert (count(state, "starts:o1"), count(state, "effects:o1")) == (1, 1)
    # and the two deliveries really went to different workers, concurrently
    received = [
        {tid for tid in (first.id, second.id) if f"charge[{tid}] received" in w.log_text()}
        for w in workers
    ]
    assert all(len(r) >= 1 for r in received), received
    logs = "".join(w.log_text() for w in workers)
    assert "is being run by task" in logs  # the duplicate waited instead of running


def test_after_success_a_duplicate_returns_the_stored_result(
    env: dict[str, str], kit_redis_url: str, kit_worker
) -> None:
    worker = kit_worker(APP, env=env, pythonpath=[APPS], concurrency=1)
    _app, charge = producer_with_charge(env)
    state = redis.Redis.from_url(kit_redis_url)
    # When the same key is published twice while the first is pending
    pending = charge.delay("o2", 0.5)
    again = charge.delay("o2", 0.5)
    # Then the second publish returns the pending task instead of queuing another
    assert again.id == pending.id
    stored = pending.get(timeout=30)
    # When it is delivered again after success (a new message)
    later = charge.delay("o2", 0.5)
    assert later.id != pending.id
    # Then the stored result comes back without running the body
    assert later.get(timeout=30) == stored
    assert (count(state, "starts:o2"), count(state, "effects:o2")) == (1, 1)
    assert f"charge[{later.id}]: celery_kit:idem:kit_reliability.charge:charge:o2 already done" in (
        worker.log_text()
    )


def test_a_run_sigkilled_mid_body_is_completed_once_after_its_lease_expires(
    kit_redis_url: str, kit_worker
) -> None:
    # Celery notices the dead pool process after worker_lost_wait (10 s by default) and
    # requeues at once; 1 s here, so the redelivery usually arrives while the lease (4 s)
    # still holds and has to wait for it (it is deferred, "is being run by task ...").
    env = kit_env(
        kit_redis_url,
        kit_redis_url,
        IDEMPOTENCY__LEASE_S="4",
        CELERY_OVERRIDES='{"worker_lost_wait": 1}',
    )
    worker = kit_worker(APP, env=env, pythonpath=[APPS], concurrency=1)
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    # Given a charge whose body is running (its effect not yet applied)
    result = app.send_task("kit_reliability.charge", args=["o3", 3.0])
    wait_for(lambda: count(state, "starts:o3") == 1, timeout_s=20, what="the body to start")
    victim = int(state.lindex("pids:o3", 0) or 0)
    assert victim in worker.pool_pids()
    # When its pool process is SIGKILLed mid-body
    os.kill(victim, signal.SIGKILL)
    key = "celery_kit:idem:kit_reliability.charge:charge:o3"
    expires_at = time.time() + int(state.pttl(key)) / 1000  # nobody renews it any more
    assert state.hget(key, "s") == b"r"
    # Then the redelivered message waits for the dead run's lease, runs, and succeeds
    value = result.get(timeout=60)
    assert value["charged"] == "o3"
    assert value["pid"] != victim
    # and the effect happened exactly once (the killed run never reached it)
    assert (count(state, "starts:o3"), count(state, "effects:o3")) == (2, 1)
    # and the second body started only once the dead run's lease had expired
    second_start = float(state.lindex("started-at:o3", 1) or 0)
    assert second_start >= expires_at - 0.05
    assert state.hget(key, "s") == b"d"


#: The bound docs/reliability.md states: a duplicate returns the original's result at
#: most DUPLICATE_DEFER_MAX_S x 1.2 (6 s) after the original finished; 2 s of slack here
#: for busy CI machines. The lease is the default 30 s, as in the reported 33.8 s wait.
DUPLICATE_BOUND_S = 8.0


@pytest.mark.parametrize("body_s", [1.0, 4.0], ids=["waits-in-place", "deferred"])
def test_overlapping_duplicate_returns_soon_after_the_original_not_after_the_lease(
    kit_redis_url: str, kit_worker, body_s: float
) -> None:
    # countdowns may reach the lease (the kit caps every deferral at tasks.max_countdown_s)
    env = kit_env(
        kit_redis_url, kit_redis_url, IDEMPOTENCY__LEASE_S="30", TASKS__MAX_COUNTDOWN_S="60"
    )
    kit_worker(APP, env=env, pythonpath=[APPS], concurrency=2)
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    order = f"dup-{body_s:g}"
    # Given two deliveries of one key running at the same time on two pool processes
    first = app.send_task("kit_reliability.charge", args=[order, body_s])
    wait_for(lambda: state.exists(f"starts:{order}"), timeout_s=30, what="the original")
    second = app.send_task("kit_reliability.charge", args=[order, body_s])
    # Then the duplicate returns the original's result, the body ran once
    assert first.get(timeout=60) == second.get(timeout=60)
    assert (count(state, f"starts:{order}"), count(state, f"effects:{order}")) == (1, 1)
    # And it finished within the documented bound after the original, not a lease later
    gap_s = (second.date_done - first.date_done).total_seconds()
    assert gap_s <= DUPLICATE_BOUND_S, gap_s


KILLED = "kit_reliability.charge_once_killed"


def idem_key(order: str) -> str:
    return f"celery_kit:idem:{KILLED}:charge:{order}"


@pytest.mark.parametrize("when", ["before", "after"])
def test_pool_process_sigkilled_right_after_the_body_around_the_completion(
    kit_redis_url: str, kit_worker, when: str
) -> None:
    # Celery requeues the message of a dead pool process after worker_lost_wait (1 s here)
    env = kit_env(
        kit_redis_url,
        kit_redis_url,
        IDEMPOTENCY__LEASE_S="3",
        CELERY_OVERRIDES='{"worker_lost_wait": 1}',
    )
    worker = kit_worker(APP, env=env, pythonpath=[APPS], concurrency=1)
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    order = f"kill-{when}"
    # Given a charge whose first run is SIGKILLed once its body returned: "before" its
    # completion is written, or "after" (written, reply not read, result not reported)
    result = app.send_task(KILLED, args=[order, when])
    value = result.get(timeout=60)
    pids = [int(p) for p in state.lrange(f"pids:{order}", 0, -1)]
    wait_for(lambda: pids[0] not in worker.pool_pids(), timeout_s=30, what="the kill")
    key = idem_key(order)
    # (the completion is sent without waiting, on another connection than the result)
    wait_for(lambda: state.hget(key, "s") == b"d", timeout_s=10, what="the completion")
    if when == "after":
        # Then the completion the killed run sent (and never read the reply of) holds:
        # another delivery of the key returns the stored result without running the body
        assert state.get(f"completion-seen:{order}") == b"d"
        again = app.send_task(KILLED, args=[order, when])
        assert again.get(timeout=60) == value == {"charged": order, "pid": pids[0]}
        assert (count(state, f"starts:{order}"), count(state, f"effects:{order}")) == (1, 1)
        assert f"{key} already done" in worker.log_text()
    else:
        # Then the body ran again (the documented window: effect done, completion not),
        # but only after the dead run's lease expired, so the two never overlapped
        assert (count(state, f"starts:{order}"), count(state, f"effects:{order}")) == (2, 2)
        assert value == {"charged": order, "pid": pids[1]}
        started = [float(t) for t in state.lrange(f"started-at:{order}", 0, -1)]
        assert started[1] - started[0] >= 3.0 - 0.05


@pytest.fixture
def kit_state_server(tmp_path) -> Any:
    """The kit's own Redis (redis.url), apart from the broker, so a test can restart it."""
    from celery_kit.testing import RedisServer

    (tmp_path / "kit-state").mkdir()
    with RedisServer(workdir=tmp_path / "kit-state") as server:
        yield server


@pytest.mark.parametrize("down_s", [0.2, 5.0], ids=["restart", "unreachable-at-completion"])
def test_kit_redis_restarted_while_the_body_runs_still_records_the_completion(
    kit_redis_url: str, kit_worker, kit_state_server: Any, down_s: float
) -> None:
    # The kit's Redis (no persistence) restarts while the body runs: the claim and the
    # script cache are gone. "restart": back before the body ends (the completion meets a
    # dead connection, then NOSCRIPT). "unreachable-at-completion": still down when the
    # body ends and for seconds after (the completion cannot be sent; the lease thread
    # keeps sending it).
    env = kit_env(kit_redis_url, kit_redis_url, IDEMPOTENCY__LEASE_S="30")
    env["CELERY_KIT_REDIS__URL"] = kit_state_server.url(0)
    worker = kit_worker(APP, env=env, pythonpath=[APPS], concurrency=1)
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    kit = kit_state_server.client(0)
    order = f"restart-{down_s:g}"
    key = idem_key(order)
    result = app.send_task(KILLED, args=[order, "never", 1.5])
    wait_for(lambda: count(state, f"starts:{order}") == 1, timeout_s=30, what="the body")
    assert kit.hget(key, "s") == b"r"
    kit.close()
    kit_state_server.restart(down_for_s=down_s)
    kit = kit_state_server.client(0)
    # Then the task succeeded and its completion is in the restarted Redis
    value = result.get(timeout=60)
    wait_for(lambda: kit.hget(key, "s") == b"d", timeout_s=30, what="the completion")
    assert kit.hget(key, "t") == result.id.encode()
    # and a duplicate returns the stored result without running the body again
    again = app.send_task(KILLED, args=[order, "never", 1.5])
    assert again.get(timeout=60) == value
    assert (count(state, f"starts:{order}"), count(state, f"effects:{order}")) == (1, 1)
    if down_s > 1:  # the completion was queued while Redis was away, not dropped
        assert "could not be recorded" not in worker.log_text()
