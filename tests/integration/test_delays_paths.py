"""Every publishing path routes a long countdown/ETA to the delay set, and a short one to
the queue (issue: "one place decides" — the kit's publish path)."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from celery import chain, chord, group

from celery_kit.coordination.dead_letter import DeadLetter
from celery_kit.coordination.dlq import DeadLetterStore
from celery_kit.delays.ops import DelaySet
from celery_kit.testing import RedisServer, wait_until
from tests.integration.support.delays import (
    APP,
    APPS,
    delayed_ids,
    delays_env,
    producer,
    queued_ids,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(kit_redis_server: RedisServer, kit_redis_url: str) -> dict[str, str]:
    return delays_env(kit_redis_server.url(kit_redis_server.fresh_db()), kit_redis_url)


@pytest.fixture
def setup(env: dict[str, str]) -> Iterator[tuple[Any, Any, redis.Redis]]:
    app = producer(env)
    # ids only: without a result backend no result subscription outlives the test's Redis
    app.conf.result_backend = "disabled"

    @app.task(name="kit_delays.record", shared=False)
    def record(token: str) -> str:  # published here, run by the worker app
        return token

    with redis.Redis.from_url(env["CELERY_BROKER_URL"]) as broker:
        yield app, record, broker
    app.close()


def _only_delayed(app: Any, broker: redis.Redis, *ids: str) -> None:
    waiting, queued = delayed_ids(app), queued_ids(broker)
    for task_id in ids:
        assert task_id in waiting, (task_id, waiting)
        assert task_id not in queued, (task_id, queued)


def test_delay_and_apply_async_and_signature(setup: Any) -> None:
    app, record, broker = setup
    a = record.apply_async(("a",), countdown=600)
    b = record.s("b").set(countdown=900).delay()  # delay() of a signature with options
    c = record.signature(("c",), countdown=1200).apply_async()
    _only_delayed(app, broker, a.id, b.id, c.id)


def test_send_task_with_eta(setup: Any) -> None:
    app, _, broker = setup
    eta = datetime.now(timezone.utc) + timedelta(hours=5)
    result = app.send_task("kit_delays.record", args=["eta"], eta=eta)
    _only_delayed(app, broker, result.id)


def test_canvas_chain_and_group(setup: Any) -> None:
    app, record, broker = setup
    first = chain(record.s("c1").set(countdown=600), record.s()).apply_async()
    grouped = group(record.s(f"g{i}") for i in range(3)).apply_async(countdown=600)
    _only_delayed(app, broker, first.parent.id, *(r.id for r in grouped.results))
    # the chain's second task is not published until the first ran
    assert first.id not in delayed_ids(app) + queued_ids(broker)


def test_canvas_chord(env: dict[str, str]) -> None:
    app = producer(env)  # chords need the result backend

    @app.task(name="kit_delays.record", shared=False)
    def record(token: str) -> str:
        return token

    with redis.Redis.from_url(env["CELERY_BROKER_URL"]) as broker:
        chorded = chord([record.s("h1"), record.s("h2")], record.s()).apply_async(countdown=600)
        header_ids = [r.id for r in chorded.parent.results]
        _only_delayed(app, broker, *header_ids)
    del chorded
    # the chord's results unsubscribe while their Redis runs; then close what they opened
    for waiters in list(app.backend._pending_results.concrete.values()):
        for pending in list(waiters.values()):
            app.backend.remove_pending_result(pending)
    gc.collect()
    app.backend.result_consumer.stop()
    app.backend.client.connection_pool.disconnect()
    app.close()


def test_retry_with_a_long_countdown_waits_in_the_delay_set(
    setup: Any, env: dict[str, str], kit_redis_url: str, kit_worker: Any
) -> None:
    app, _, broker = setup
    kit_worker(APP, env=env, pythonpath=[APPS], pool="threads", concurrency=2)
    result = app.send_task("kit_delays.retry_once", args=["r", 3600])
    wait_until(lambda: result.id in delayed_ids(app), timeout_s=30, what="the retry")
    _only_delayed(app, broker, result.id)
    with redis.Redis.from_url(kit_redis_url) as state:
        assert [json.loads(r)["retries"] for r in state.lrange("runs:r", 0, -1)] == [0]


def test_dlq_replay_keeps_the_remaining_delay(setup: Any) -> None:
    app, _, broker = setup
    due = datetime.now(timezone.utc) + timedelta(hours=2)
    store = DeadLetterStore(app)
    entry = DeadLetter(
        id="dl-1", task="kit_delays.record", args=["dl"], kwargs={}, reason="worker_lost",
        exception_type="x.Lost", exception="lost", traceback="", attempts=1,
        queue="default", routing_key="default", eta=due.isoformat(),
    )  # fmt: skip
    store.add(entry)
    store.replay(app, store.get("dl-1") or entry)
    _only_delayed(app, broker, "dl-1")
    with DelaySet(app) as ds:
        item = ds.get("dl-1")
    assert item is not None
    assert abs(item.due - due.timestamp()) < 0.01


def test_a_countdown_within_the_threshold_goes_to_the_queue(setup: Any) -> None:
    app, record, broker = setup
    short = record.apply_async(("short",), countdown=2)  # threshold: 0.2 + 3 s
    past = app.send_task("kit_delays.record", args=["p"], eta=datetime.now(timezone.utc))
    queued = queued_ids(broker)
    assert short.id in queued
    assert past.id in queued
    assert delayed_ids(app) == []
