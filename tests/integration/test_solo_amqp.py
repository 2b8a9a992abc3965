"""A solo worker on RabbitMQ with the kit's defaults (prefetch count 1, late acks).

Its acks are written at once (``topology/acks.py``): every task is acknowledged exactly
once, none early, and the broker keeps nothing unacknowledged. How much faster that is is
measured, not asserted: ``bench/results/overhead.md`` (the ``amqp/solo`` rows).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis
from kombu import Connection

from celery_kit.testing import wait_until
from tests.integration.test_foundation import APPS, kit_env, producer

pytestmark = [pytest.mark.amqp, pytest.mark.timeout(180)]


def ready(url: str, queue: str) -> int:
    """Messages of ``queue`` ready for delivery, as the broker reports them. Once the
    worker is gone, any delivery it left unacknowledged is back among them."""
    with Connection(url, connect_timeout=5) as conn:
        _, count, _ = conn.default_channel.queue_declare(queue, passive=True)
    return int(count)


def test_every_task_is_acked_once_and_nothing_stays_unacked(
    kit_amqp_url: str, kit_redis_url: str, kit_unique_name: str, kit_worker: Any
) -> None:
    env = kit_env(kit_amqp_url, kit_redis_url, soft=30, hard=40, queue=kit_unique_name)
    worker = kit_worker("kit_basic", env=env, pool="solo", concurrency=1, pythonpath=[APPS])
    app = producer(env)
    try:
        results = [app.send_task("kit_basic.add", (i, i)) for i in range(60)]
        assert [r.get(timeout=60) for r in results] == [2 * i for i in range(60)]
        log = worker.log_text()
        assert "acknowledging a message failed" not in log
        assert "PRECONDITION_FAILED" not in log  # a second ack of one delivery tag
        # When the worker stops, nothing comes back: every delivery was acked
        worker.terminate()
        assert ready(kit_amqp_url, kit_unique_name) == 0
    finally:
        with Connection(kit_amqp_url, connect_timeout=5) as conn:
            conn.default_channel.queue_delete(kit_unique_name)


def test_sigkill_mid_task_is_redelivered_the_ack_is_not_early(
    kit_amqp_url: str, kit_redis_url: str, kit_unique_name: str, kit_worker: Any
) -> None:
    env = kit_env(kit_amqp_url, kit_redis_url, soft=30, hard=40, queue=kit_unique_name)
    first = kit_worker("kit_basic", env=env, pool="solo", concurrency=1, pythonpath=[APPS])
    app, r, key = producer(env), redis.Redis.from_url(kit_redis_url), uuid.uuid4().hex
    try:
        # Given a long task running in a solo worker
        result = app.send_task("kit_basic.record_and_sleep", (key, 2.0))
        wait_until(lambda: r.lindex(f"pids:{key}", 0), timeout_s=30, what="task start")
        # When the worker is SIGKILLed before the task ends
        first.kill()
        assert r.get(f"done:{key}") is None
        # Then the message was not acked: a new worker gets it and completes it
        kit_worker("kit_basic", env=env, pool="solo", concurrency=1, pythonpath=[APPS])
        assert result.get(timeout=60) == 2
        assert int(r.get(f"done:{key}")) == 1
    finally:
        with Connection(kit_amqp_url, connect_timeout=5) as conn:
            conn.default_channel.queue_delete(kit_unique_name)
