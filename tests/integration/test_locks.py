"""Locks on real Redis and real workers (must-show 3).

``kit_reliability.locked`` holds ``lock="job:{name}"`` while it sleeps.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from celery_kit.coordination.locks import Lock
from celery_kit.exceptions import LockTakenError
from celery_kit.testing import wait_until as wait_for
from tests.integration.support.reliability import APP, APPS, kit_env, producer

pytestmark = pytest.mark.timeout(120)


def test_a_sigkilled_holder_blocks_others_no_longer_than_the_ttl(
    kit_redis_url: str, kit_worker
) -> None:
    # max_worker_lost_deliveries = 1: the killed task is parked, not re-run (it would
    # take the lock again and hide what this test looks at)
    env = kit_env(
        kit_redis_url, kit_redis_url, LOCKS__TTL_S="2", DLQ__MAX_WORKER_LOST_DELIVERIES="1"
    )
    worker = kit_worker(APP, env=env, pythonpath=[APPS], concurrency=1)
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    other = Lock("job:k1", ttl_s=5, app=app)
    # Given a task holding the lock (renewing it every ttl/3)
    app.send_task("kit_reliability.locked", args=["k1", 30])
    victim = int(wait_for(lambda: state.lindex("lock-pids:k1", 0), timeout_s=20, what="holder"))
    assert not other.acquire()
    # When its process is SIGKILLed
    os.kill(victim, signal.SIGKILL)
    # Then the lock has at most its TTL left and nobody extends it any more...
    samples = []
    while (pttl := int(state.pttl(other.key))) > 0:
        samples.append(pttl)
        time.sleep(0.05)
    assert samples
    assert samples[0] <= 2000
    assert samples == sorted(samples, reverse=True), "the dead holder's lease was renewed"
    # ...and once it expired another holder gets it
    assert other.acquire()
    assert other.release()
    assert victim not in worker.pool_pids()


def test_a_holder_whose_lease_expired_cannot_release_the_next_holders_lock(
    kit_redis_url: str, kit_worker
) -> None:
    env = kit_env(kit_redis_url, kit_redis_url, LOCKS__TTL_S="1")
    worker = kit_worker(APP, env=env, pythonpath=[APPS], concurrency=1)
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    # Given a task holding the lock
    result = app.send_task("kit_reliability.locked", args=["k2", 1.0])
    holder = int(wait_for(lambda: state.lindex("lock-pids:k2", 0), timeout_s=20, what="holder"))
    # When the holder is frozen (no renewal) past its TTL and someone else takes the lock
    os.kill(holder, signal.SIGSTOP)
    try:
        nxt = Lock("job:k2", ttl_s=30, renew=False, app=app)
        wait_for(lambda: not state.exists(nxt.key), timeout_s=10, what="the lease to expire")
        assert nxt.acquire()
    finally:
        os.kill(holder, signal.SIGCONT)
    # Then the old holder finishes, and its release does not delete the new holder's lock
    assert result.get(timeout=30) == holder
    assert state.llen("lock-done:k2") == 1
    assert state.exists(nxt.key)
    assert nxt.release(), "the new holder's lock was deleted by the old holder"
    assert "expired before its holder released it" in worker.log_text()


def test_a_task_running_three_ttls_keeps_its_lock_by_renewal(
    kit_redis_url: str, kit_worker
) -> None:
    env = kit_env(kit_redis_url, kit_redis_url, LOCKS__TTL_S="1")
    worker = kit_worker(APP, env=env, pythonpath=[APPS], concurrency=2)
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    key = Lock("job:k3", ttl_s=1, app=app).key
    # Given a task holding job:k3 for 3.5 TTLs, and a second one for the same lock
    long = app.send_task("kit_reliability.locked", args=["k3", 3.5])
    wait_for(lambda: state.exists(key), timeout_s=20, what="the lock")
    short = app.send_task("kit_reliability.locked", args=["k3", 0.1])
    # Then the lock exists for the whole run (sampled), although its TTL is 1 s
    samples: list[tuple[float, bool]] = []
    while not state.llen("lock-done:k3"):
        samples.append((time.monotonic(), bool(state.exists(key))))
        time.sleep(0.05)
    assert all(held for _, held in samples)
    assert samples[-1][0] - samples[0][0] >= 3.0  # three TTLs without a gap
    assert long.get(timeout=30)
    assert short.get(timeout=30)
    # and the second run started only after the first released it (it was deferred)
    starts = [float(t) for t in state.lrange("lock-start:k3", 0, -1)]
    dones = [float(t) for t in state.lrange("lock-done:k3", 0, -1)]
    assert len(starts) == 2
    assert starts[1] >= dones[0]
    assert "lock 'job:k3' is held by another run" in worker.log_text()


def test_lock_as_context_manager_and_decorator(kit_redis_url: str) -> None:
    client = redis.Redis.from_url(kit_redis_url)
    with Lock("cm", ttl_s=5, client=client, key_prefix="t") as held:
        assert client.pttl("t:lock:cm") > 0
        with pytest.raises(LockTakenError, match="held by someone else"):
            Lock("cm", ttl_s=5, client=client, key_prefix="t").__enter__()
        assert not held.lost
    assert not client.exists("t:lock:cm")

    @Lock("report:{report_id}", ttl_s=5, client=client, key_prefix="t")
    def build(report_id: int) -> bool:
        return bool(client.exists(f"t:lock:report:{report_id}"))

    assert build(7)
    assert not client.exists("t:lock:report:7")
    with pytest.raises(ValueError, match="TTL"):
        Lock("x", ttl_s=0, client=client)
