"""Poison messages (must-show 5): a task that kills its pool process every time ends in
the DLQ after ``dlq.max_worker_lost_deliveries`` deliveries instead of looping forever
(Celery alone requeues it on every death with reject_on_worker_lost)."""

from __future__ import annotations

import pytest
import redis

from celery_kit import Priority
from celery_kit.exceptions import PoisonMessageError
from celery_kit.testing import wait_until as wait_for
from tests.integration.support.reliability import APP, APPS, dlq_entries, kit_env, producer

pytestmark = pytest.mark.timeout(150)


def test_a_task_that_kills_its_process_every_time_is_dead_lettered(
    broker: tuple[str, str], kit_redis_url: str, kit_worker
) -> None:
    broker_url, queue = broker
    env = kit_env(
        broker_url,
        kit_redis_url,
        DLQ__MAX_WORKER_LOST_DELIVERIES="3",
        TASKS__DEFAULT_QUEUE=queue,
        # Celery notices a dead pool process after worker_lost_wait (10 s by default)
        CELERY_OVERRIDES='{"worker_lost_wait": 1}',
    )
    worker = kit_worker(APP, env=env, pythonpath=[APPS], concurrency=2, queues=[queue])
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    # When a task SIGKILLs the process running it, on every delivery
    result = app.send_task("kit_reliability.suicide", args=["s"], priority=Priority.HIGH)
    # Then after the 3rd death it is stored FAILURE instead of being requeued again
    with pytest.raises(PoisonMessageError, match="killed its pool process 3 times"):
        result.get(timeout=90)
    assert int(state.get("runs:s") or 0) == 3
    # and it is in the DLQ with its arguments and death count
    (entry,) = dlq_entries(env)
    assert (entry["id"], entry["reason"], entry["attempts"]) == (result.id, "worker_lost", 3)
    assert entry["args"] == ["s"]
    # stored with the kit's priority, not the broker's (reversed on Redis), so replay
    # re-publishes it as urgent as it was sent
    assert entry["priority"] == Priority.HIGH
    assert "WorkerLostError" in entry["exception_type"]
    # and it does not come back: work queued after it runs, and it never runs again
    canary = app.send_task("kit_reliability.rated", args=[1])
    assert canary.get(timeout=30) == 1
    assert int(state.get("runs:s") or 0) == 3
    log = worker.log_text()
    assert log.count("lost its pool process") == 2  # 1 of 3, 2 of 3; the 3rd is parked
    app.close()
    if broker_url.startswith("redis"):  # nothing left queued or unacknowledged for Redis
        wait_for(lambda: state.hlen("unacked") == 0, timeout_s=10, what="the canary's ack")
        assert sum(int(state.llen(k)) for k in state.keys(f"{queue}*")) == 0
