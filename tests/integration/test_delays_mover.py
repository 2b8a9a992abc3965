"""The mover under faults (must-show 2): SIGKILLed mid-run again and again, nothing is lost
or duplicated; two movers at once, one moves; Redis down and back, it moves again."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from celery_kit.delays.mover import Mover
from celery_kit.testing import RedisServer, wait_until
from tests.integration.support.delays import (
    delayed_ids,
    delays_env,
    mover_process,
    producer,
    queued_ids,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def env(kit_redis_server: RedisServer, kit_redis_url: str) -> dict[str, str]:
    broker = kit_redis_server.url(kit_redis_server.fresh_db())
    # small batches (many round trips to interrupt), a short leader lease
    return delays_env(broker, kit_redis_url, DELAYS__BATCH="3", DELAYS__LOCK_TTL_S="1")


@pytest.fixture
def state(kit_redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(kit_redis_url) as client:
        yield client
        client.delete("clock:offset")


def _publish(app: Any, n: int, prefix: str) -> list[str]:
    return [
        str(app.send_task("kit_delays.record", args=[f"{prefix}{i}"], countdown=60 + i % 60).id)
        for i in range(n)
    ]


def _exactly_once(app: Any, broker: redis.Redis, ids: list[str]) -> tuple[int, int]:
    """Every id is in the delay set or a queue, once; returns (delayed, queued)."""
    waiting, queued = delayed_ids(app), queued_ids(broker)
    seen = Counter(waiting + queued)
    assert not [i for i, n in seen.items() if n > 1], "a message is in two places"
    assert set(seen) == set(ids), f"lost: {len(set(ids) - set(seen))}"
    return len(waiting), len(queued)


@pytest.mark.slow
def test_sigkill_mid_run_loses_and_duplicates_nothing_and_two_movers_elect_one(
    env: dict[str, str], state: redis.Redis, tmp_path: Path
) -> None:
    app = producer(env)
    app.conf.result_backend = "disabled"
    ids = _publish(app, 3000, "k")
    state.set("clock:offset", "-3600")  # the movers' delay clock: an hour ahead, all due
    with redis.Redis.from_url(env["CELERY_BROKER_URL"]) as broker:
        assert _exactly_once(app, broker, ids) == (3000, 0)
        mid_run = 0
        rng = random.Random(2)
        delay_key = app.conf.broker_transport_options["delay_key"]
        for attempt in range(5):
            before = int(broker.zcard(delay_key))
            if before == 0:
                break
            proc = mover_process(env, tmp_path / f"mover-{attempt}.log")
            # wait until it moves, then SIGKILL it at a random moment of its run (a batch
            # is one script: a kill lands between batches or while one is in flight)
            wait_until(
                lambda b=before, p=proc: int(broker.zcard(delay_key)) < b or p.poll() is not None,
                timeout_s=30,
                every_s=0.005,
                what="the mover to start moving",
            )
            time.sleep(rng.uniform(0, 0.02))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            waiting, _ = _exactly_once(app, broker, ids)
            mid_run += 0 < waiting < before
        assert mid_run >= 2, f"only {mid_run} kills landed mid-run"
        # a mover left alone moves the rest: each message once
        last = mover_process(env, tmp_path / "mover-last.log")
        wait_until(lambda: broker.zcard(delay_key) == 0, timeout_s=60, what="the rest moved")
        last.send_signal(signal.SIGTERM)
        last.wait(timeout=10)
        assert _exactly_once(app, broker, ids) == (0, 3000)
        # Two movers at once: one becomes the leader and moves, the other waits
        more = _publish(app, 1000, "t")
        logs = [tmp_path / "two-a.log", tmp_path / "two-b.log"]
        procs = [mover_process(env, log) for log in logs]
        wait_until(lambda: not delayed_ids(app), timeout_s=60, what="the movers to finish")
        time.sleep(1.5)  # longer than the lease: a second leader would have shown by now
        leaders = [log for log in logs if "this process is the leader" in log.read_text()]
        assert len(leaders) == 1, [log.read_text()[-500:] for log in logs]
        for proc in procs:  # (the first to stop hands the lock over to the other)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        assert _exactly_once(app, broker, ids + more) == (0, 4000)
    app.close()


def test_the_mover_survives_redis_going_away(tmp_path: Path) -> None:
    with RedisServer() as server:
        url = server.url(1)
        env = delays_env(url, server.url(2))
        app = producer(env)
        app.conf.result_backend = "disabled"
        mover = Mover(app, clock=lambda: time.time() + 3600, interval_s=0.1)
        mover.start()
        try:
            first = _publish(app, 10, "a")
            with redis.Redis.from_url(url) as broker:
                wait_until(lambda: len(queued_ids(broker)) == 10, timeout_s=20, what="a move")
                assert first
            server.restart(down_for_s=2.0)  # no persistence: Redis comes back empty
            second = _publish(app, 10, "b")
            with redis.Redis.from_url(url) as broker:
                wait_until(
                    lambda: sorted(queued_ids(broker)) == sorted(second),
                    timeout_s=30,
                    what="moves after the outage",
                )
        finally:
            mover.stop()
            app.close()


def test_moves_in_due_order_in_batches_and_sets_a_malformed_member_aside(
    env: dict[str, str],
) -> None:
    app = producer(env)
    app.conf.result_backend = "disabled"
    ids = [
        str(app.send_task("kit_delays.record", args=[i], countdown=100 - i).id) for i in range(6)
    ]  # the last published is due first
    with redis.Redis.from_url(env["CELERY_BROKER_URL"]) as broker:
        delay_key = app.conf.broker_transport_options["delay_key"]
        broker.zadd(delay_key, {"not a message": 0.0})
        mover = Mover(app, clock=lambda: time.time() + 200, batch=2)
        assert mover.step() == 6
        assert mover.stats.round_trips == 4  # 7 members (one malformed), batches of 2
        order = [json.loads(raw)["headers"]["id"] for raw in broker.lrange("default:4", 0, -1)]
        assert order == ids  # LPUSH: earliest due rightmost (consumed first)
        assert broker.lrange("_celery_kit.malformed", 0, -1) == [b"not a message"]
        assert broker.zcard(delay_key) == 0
        mover.stop()
    app.close()


def test_depth_counts_delayed_messages_per_queue_and_the_mover_observes_lag(
    env: dict[str, str],
) -> None:
    from celery_kit import Settings, make_app
    from celery_kit.observability.depth import DepthReader
    from celery_kit.observability.metrics import metrics_of
    from celery_kit.observability.poller import QueueLengthPoller

    settings = Settings(_environ={**env, "CELERY_KIT_METRICS__ENABLED": "true"})
    app = make_app("kit_delays", settings=settings)
    app.conf.result_backend = "disabled"
    for _ in range(3):
        app.send_task("kit_delays.record", args=["d"], countdown=600)
    app.send_task("kit_delays.record", args=["l"], countdown=600, queue="low")
    app.send_task("kit_delays.record", args=["now"])
    reader = DepthReader(app)
    depth = reader.read(["default", "low"])
    reader.close()
    assert (depth["default"].messages, depth["default"].delayed) == (1, 3)
    assert (depth["low"].messages, depth["low"].delayed) == (0, 1)
    m = metrics_of(app)
    poller = QueueLengthPoller(app, m, queues=["default", "low"], interval_s=60)
    poller.sample_once()
    poller.stop()
    value = m.registry.get_sample_value
    assert value("celery_queue_depth", {"queue_name": "default", "state": "delayed"}) == 3
    assert value("celery_queue_depth", {"queue_name": "default", "state": "ready"}) == 1
    assert value("celery_queue_length", {"queue_name": "default"}) == 1  # not backlog
    mover = Mover(app, clock=lambda: time.time() + 700)
    assert mover.step() == 4
    mover.stop()
    assert value("celery_delay_lag_seconds_count", {}) == 4
    app.close()
