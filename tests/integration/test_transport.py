"""The kit's Redis transport with real workers: atomic consume (must-show 1), renewal
keeps long tasks single while their worker lives and a crashed worker's task comes back
promptly (must-show 4), canvas and results over it (must-show 6)."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from celery_kit.testing import RedisServer, wait_until
from tests.integration.support.transport import APP, APPS, producer, transport_env

pytestmark = pytest.mark.timeout(240)


def _broker(server: RedisServer) -> str:
    return server.url(server.fresh_db())


def _blocked_in_wait(client: redis.Redis) -> bool:
    return any(c.get("cmd") == "bzpopmin" for c in client.client_list())


def test_a_worker_frozen_in_its_blocking_wait_then_killed_loses_nothing(
    kit_redis_server: RedisServer, kit_redis_url: str, kit_worker
) -> None:
    broker = _broker(kit_redis_server)
    env = transport_env(broker, kit_redis_url)
    state, broker_client = redis.Redis.from_url(kit_redis_url), redis.Redis.from_url(broker)
    first = kit_worker(APP, env=env, pythonpath=[APPS], pool="solo", concurrency=1)
    # Given a worker frozen while it waits for work (kombu's BRPOP took the message in
    # this state and lost it with the worker)
    wait_until(lambda: _blocked_in_wait(broker_client), timeout_s=20, what="a blocking wait")
    os.kill(first.pid, signal.SIGSTOP)
    app = producer(env)
    result = app.send_task("kit_transport.mark", args=["frozen"])
    time.sleep(1.5)  # its wait returns a wake-up token to the frozen worker
    # When it is SIGKILLed and another worker starts
    first.kill()
    second = kit_worker(APP, env=env, pythonpath=[APPS], pool="solo", concurrency=1)
    # Then the task runs, once, on the second worker
    assert result.get(timeout=30) == "frozen"
    runs = [r.decode() for r in state.lrange("runs:frozen", 0, -1)]
    assert len(runs) == 1, runs
    assert runs[0].startswith(second.hostname), runs
    app.close()


@pytest.mark.slow
def test_long_tasks_run_once_under_renewal_and_return_promptly_after_a_crash(
    kit_redis_server: RedisServer, kit_redis_url: str, kit_worker
) -> None:
    # visibility timeout 10 s (4 x 2.5 s renewal); tasks three times as long
    renewal_s, timeout_s, task_s = 2.5, 10.0, 30.0
    state = redis.Redis.from_url(kit_redis_url)
    runs = {}
    for pool in ("prefork", "threads", "solo"):
        env = transport_env(
            _broker(kit_redis_server), kit_redis_url, BROKER__RENEWAL_INTERVAL_S=str(renewal_s)
        )
        assert producer(env).conf.visibility_timeout == timeout_s
        # two workers per pool, so a redelivery would have somewhere to run
        workers = [kit_worker(APP, env=env, pythonpath=[APPS], pool=pool) for _ in range(2)]
        app = producer(env)
        runs[pool] = (env, workers, app, app.send_task("kit_transport.slow", args=[pool, task_s]))
    for pool, (_, _, _, result) in runs.items():
        assert result.get(timeout=task_s + 30) == pool
        # runs exactly once while its worker lives, though it outlived the timeout 3 times
        assert state.llen(f"starts:{pool}") == 1, state.lrange(f"starts:{pool}", 0, -1)
    # Whole worker SIGKILLed mid-task: another worker starts it within about
    # visibility timeout + renewal interval (+ restore interval and wake-up)
    env, workers, app, _ = runs["prefork"]
    crash = app.send_task("kit_transport.slow", args=["crash", 60])
    wait_until(lambda: state.llen("starts:crash") == 1, timeout_s=20, what="the first start")
    holder = next(
        w for w in workers if state.lindex("starts:crash", 0).decode().startswith(w.hostname)
    )
    killed_at = time.time()
    holder.kill()
    wait_until(lambda: state.llen("starts:crash") == 2, timeout_s=60, what="the redelivery")
    restarted_at = float(state.lindex("starts:crash", 1).decode().rsplit("|", 1)[1])
    took = restarted_at - killed_at
    print(f"whole-worker SIGKILL -> restarted on another worker after {took:.1f} s")
    assert took <= timeout_s + renewal_s + 5, took
    crash.revoke(terminate=True)
    for _, _, app, _ in runs.values():
        app.close()


def test_canvas_and_results_over_the_kit_transport(
    kit_redis_server: RedisServer, kit_redis_url: str, kit_worker
) -> None:
    from celery import chain, chord, group

    env = transport_env(_broker(kit_redis_server), kit_redis_url)
    kit_worker(APP, env=env, pythonpath=[APPS], concurrency=2)
    app = producer(env)
    add, total = app.signature("kit_transport.add"), app.signature("kit_transport.total")
    assert chain(add.clone((1, 2)), add.clone((10,)), add.clone((100,)))().get(timeout=30) == 113
    assert group(add.clone((i, i)) for i in range(10))().get(timeout=30) == [
        2 * i for i in range(10)
    ]
    assert chord((add.clone((i, 1)) for i in range(10)), total)().get(timeout=30) == 55
    # a chord inside a chain, and a result read back by id from a fresh app
    workflow = chain(chord((add.clone((i, 0)) for i in range(5)), total), add.clone((1000,)))
    result = workflow()
    assert result.get(timeout=30) == 1010
    fresh = producer(env)
    assert fresh.AsyncResult(result.id).get(timeout=5) == 1010
    # nothing left queued or unacknowledged on the broker
    broker = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    wait_until(lambda: broker.zcard("unacked_index") == 0, timeout_s=10, what="every ack")
    assert broker.hlen("unacked") == 0
    app.close()
    fresh.close()


def test_a_worker_survives_malformed_messages_and_keeps_consuming(
    kit_redis_server: RedisServer, kit_redis_url: str, kit_worker
) -> None:
    broker = _broker(kit_redis_server)
    env = transport_env(broker, kit_redis_url)
    worker = kit_worker(APP, env=env, pythonpath=[APPS], pool="solo", concurrency=1)
    client = redis.Redis.from_url(broker)
    # Given garbage and a message without a delivery tag in the queue a worker consumes
    client.lpush("default", b"{not json", b'{"body": "", "properties": {}}')
    app = producer(env)
    # When a real task follows them, it runs, and the worker is still alive
    assert app.send_task("kit_transport.mark", args=["after"]).get(timeout=30) == "after"
    assert worker.is_alive()
    # and the malformed payloads were dead-lettered by the worker's consumer guard (the
    # transport hands them over), not lost, not redelivered in a loop, not left aside
    from celery_kit.coordination.dlq import DeadLetterStore

    entries = wait_until(
        lambda: [e for e in DeadLetterStore(app).list() if e.reason == "malformed"] or None,
        timeout_s=10,
        what="two malformed dead letters",
    )
    assert len(entries) == 2
    assert client.llen("_celery_kit.malformed") == 0
    # (the real task's result is stored before its ack: give the ack a moment)
    wait_until(lambda: client.hlen("unacked") == 0, timeout_s=10, what="nothing left unacked")
    app.close()


def test_a_countdown_longer_than_the_visibility_timeout_runs_once(
    kit_redis_server: RedisServer, kit_redis_url: str, kit_worker
) -> None:
    # visibility timeout 4 s (4 x 1 s renewal); Celery holds a countdown task in the worker
    env = transport_env(_broker(kit_redis_server), kit_redis_url)
    assert producer(env).conf.visibility_timeout == 4.0
    for _ in range(2):  # a second worker that a wrongly restored message would go to
        kit_worker(APP, env=env, pythonpath=[APPS], pool="solo", concurrency=1)
    app = producer(env)
    state = redis.Redis.from_url(kit_redis_url)
    # Given a task held (unacknowledged) for 3 visibility timeouts before it may run
    sent_at = time.time()
    result = app.send_task("kit_transport.mark", args=["eta"], countdown=12)
    # Then it runs once, after its countdown, though nothing acked it for 12 s
    assert result.get(timeout=40) == "eta"
    time.sleep(5)  # more than a visibility timeout more: no second run appears
    runs = [r.decode() for r in state.lrange("runs:eta", 0, -1)]
    assert len(runs) == 1, runs
    assert float(runs[0].rsplit("|", 1)[1]) >= sent_at + 11.5
    app.close()
