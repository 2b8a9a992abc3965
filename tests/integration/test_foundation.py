"""The foundation on real brokers and real prefork workers: nothing lost, nothing looped.

Given/When/Then in each test; every worker is a real ``celery worker`` subprocess.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis
from celery import Celery
from celery.exceptions import TimeLimitExceeded

from celery_kit import Settings, make_app
from celery_kit.testing import wait_until as wait_for

APPS = str(Path(__file__).parent / "apps")
pytestmark = pytest.mark.timeout(180)

#: Short limits so the tests run in seconds. The kit's Redis transport renews held messages
#: every second, so its derived visibility timeout is 4 s and a dead worker's message is
#: restored within about 5 s (with kombu's transport: 1 x hard + 1 (countdown) + 1
#: (margin) seconds, swept every second instead of every ~100 s).
FAST_RESTORE = '{"unacked_restore_interval": 1, "unacked_restore_throttle": 1}'


def kit_env(broker: str, state: str, *, soft: float, hard: float, queue: str) -> dict[str, str]:
    return {
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": state,
        "KIT_TEST_STATE_URL": state,
        "CELERY_KIT_TASKS__SOFT_TIME_LIMIT_S": str(soft),
        "CELERY_KIT_TASKS__TIME_LIMIT_S": str(hard),
        "CELERY_KIT_TASKS__MAX_COUNTDOWN_S": "1",
        "CELERY_KIT_TASKS__RETRY_BACKOFF_MAX_S": "1",
        "CELERY_KIT_TASKS__DEFAULT_QUEUE": queue,
        "CELERY_KIT_BROKER__VISIBILITY_MARGIN_S": "1",
        "CELERY_KIT_BROKER__TRANSPORT_OPTIONS": FAST_RESTORE,
        "CELERY_KIT_BROKER__RENEWAL_INTERVAL_S": "1",
    }


def producer(env: dict[str, str]) -> Celery:
    """The test's own app, configured exactly like the worker's (no os.environ)."""
    return make_app("kit_basic", settings=Settings(_environ=env))


def waiting(r: redis.Redis, queue: str) -> int:
    """Messages waiting in ``queue`` on Redis, across all its priority sub-lists."""
    names = [queue, *(f"{queue}:{step}" for step in range(1, 10))]
    return sum(int(r.llen(name)) for name in names)


def test_sigkilled_pool_child_task_is_redelivered_and_completes(
    broker: tuple[str, str], kit_redis_url: str, kit_worker
) -> None:
    broker_url, queue = broker
    env = kit_env(broker_url, kit_redis_url, soft=20, hard=25, queue=queue)
    worker = kit_worker("kit_basic", env=env, concurrency=2, pythonpath=[APPS])
    app, r, key = producer(env), redis.Redis.from_url(kit_redis_url), uuid.uuid4().hex

    # Given a task running in a prefork child
    result = app.send_task("kit_basic.record_and_sleep", (key, 2.0))
    pid = int(wait_for(lambda: r.lindex(f"pids:{key}", 0), timeout_s=30, what="task start"))
    assert pid in worker.pool_pids()
    # When that child is SIGKILLed mid-task
    import os
    import signal

    os.kill(pid, signal.SIGKILL)
    # Then the message is redelivered and the task completes, exactly once to the end
    assert result.get(timeout=60) == 2
    assert int(r.get(f"attempts:{key}")) == 2
    assert int(r.get(f"done:{key}")) == 1
    assert "WorkerLostError" in worker.log_text()


def test_whole_worker_sigkilled_then_new_worker_completes_the_task(
    broker: tuple[str, str], kit_redis_url: str, kit_worker
) -> None:
    broker_url, queue = broker
    env = kit_env(broker_url, kit_redis_url, soft=3, hard=4, queue=queue)
    first = kit_worker("kit_basic", env=env, concurrency=1, pythonpath=[APPS])
    app, r, key = producer(env), redis.Redis.from_url(kit_redis_url), uuid.uuid4().hex

    # Given a task running in a worker
    result = app.send_task("kit_basic.record_and_sleep", (key, 1.5))
    wait_for(lambda: r.lindex(f"pids:{key}", 0), timeout_s=30, what="task start")
    # When the whole worker (main process and pool) is SIGKILLed
    first.kill()
    assert not first.is_alive()
    assert r.get(f"done:{key}") is None
    # and a new worker starts (on Redis the message returns after the 4 s derived
    # visibility timeout; on RabbitMQ as soon as the connection drops)
    kit_worker("kit_basic", env=env, concurrency=1, pythonpath=[APPS])
    # Then the task runs again and completes
    assert result.get(timeout=90) == 2
    assert int(r.get(f"attempts:{key}")) == 2
    assert int(r.get(f"done:{key}")) == 1


def test_soft_limit_raises_inside_the_task(kit_redis_url: str, kit_worker) -> None:
    env = kit_env(kit_redis_url, kit_redis_url, soft=1, hard=3, queue="default")
    kit_worker("kit_basic", env=env, concurrency=1, pythonpath=[APPS])
    app, r, key = producer(env), redis.Redis.from_url(kit_redis_url), uuid.uuid4().hex

    result = app.send_task("kit_basic.soft_limited", (key,))
    assert result.get(timeout=30) == "cleaned up"
    assert r.get(f"soft:{key}") == b"caught"


def test_hard_limit_kills_the_task_once_without_redelivery_loop(
    kit_redis_url: str, kit_worker
) -> None:
    env = kit_env(kit_redis_url, kit_redis_url, soft=1, hard=2, queue="default")
    worker = kit_worker("kit_basic", env=env, concurrency=1, pythonpath=[APPS])
    app, r, key = producer(env), redis.Redis.from_url(kit_redis_url), uuid.uuid4().hex
    visibility_s = app.conf.visibility_timeout
    assert visibility_s == 4 * 1  # 4 x the 1 s renewal interval

    # Given a task that ignores its soft limit
    result = app.send_task("kit_basic.hard_limited", (key,))
    # Then the hard limit kills it and it ends FAILURE
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=30)
    assert result.state == "FAILURE"
    assert r.get(f"soft:{key}") == b"ignored"
    # And it is not redelivered: wait past visibility timeout + several restore sweeps
    time.sleep(visibility_s + 4)
    assert int(r.get(f"attempts:{key}")) == 1
    assert worker.is_alive()
    # nothing left unacked or queued for it
    assert r.hlen("unacked") == 0
    assert waiting(r, "default") == 0


def test_pickle_message_is_refused_and_worker_keeps_serving(kit_redis_url: str, kit_worker) -> None:
    from kombu import Exchange, Queue

    env = kit_env(kit_redis_url, kit_redis_url, soft=5, hard=10, queue="default")
    worker = kit_worker("kit_basic", env=env, concurrency=1, pythonpath=[APPS])
    app, r, key = producer(env), redis.Redis.from_url(kit_redis_url), uuid.uuid4().hex

    # Given a raw protocol-2 task message serialized with pickle on the worker's queue
    task_id = uuid.uuid4().hex
    # (through the app's own connection, so kombu's transport options match the worker's)
    with app.connection_for_write() as conn:
        conn.Producer().publish(
            ((key, 0.0), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}),
            serializer="pickle",
            exchange=Exchange("default", type="direct"),
            routing_key="default",
            declare=[Queue("default", Exchange("default", type="direct"), "default")],
            headers={
                "task": "kit_basic.record_and_sleep",
                "id": task_id,
                "lang": "py",
                "root_id": task_id,
                "parent_id": None,
                "group": None,
                "retries": 0,
                "eta": None,
                "expires": None,
                "timelimit": [None, None],
                "argsrepr": "",
                "kwargsrepr": "",
                "origin": "test",
            },
        )
    # When the worker sees it, it refuses to deserialize it
    worker.wait_for_log("pickle", timeout_s=30)
    # Then it keeps serving other tasks, the pickled task never ran, and it is not looping
    assert app.send_task("kit_basic.add", (2, 3)).get(timeout=30) == 5
    assert r.get(f"attempts:{key}") is None
    assert waiting(r, "default") == 0
    # (the worker acks `add` just after its result is stored: wait for that ack)
    wait_for(lambda: r.hlen("unacked") == 0, timeout_s=10, what="no unacked message")
    # (the kit's envelope guard refuses it before Celery: dead-lettered as malformed)
    assert "'application/x-python-serialize' (pickle) is not accepted" in worker.log_text()


def test_worker_refuses_to_start_with_a_task_limit_above_the_budget(
    kit_redis_url: str, kit_worker
) -> None:
    from celery_kit.testing import WorkerStartError

    # kombu's Redis transport: the visibility timeout must cover the longest task
    env = kit_env(kit_redis_url, kit_redis_url, soft=5, hard=10, queue="default")
    env["CELERY_KIT_BROKER__TRANSPORT"] = "kombu"
    with pytest.raises(WorkerStartError) as info:
        kit_worker("kit_limits_bad", env=env, concurrency=1, pythonpath=[APPS], ready_timeout_s=30)
    assert "tasks.limits" in str(info.value)


def test_the_kit_transport_starts_a_worker_whose_task_outlasts_the_timeout(
    kit_redis_url: str, kit_worker
) -> None:
    # the kit's transport renews held messages: no task limit has to fit the timeout
    env = kit_env(kit_redis_url, kit_redis_url, soft=5, hard=10, queue="default")
    kit_worker("kit_limits_bad", env=env, concurrency=1, pythonpath=[APPS], ready_timeout_s=30)
