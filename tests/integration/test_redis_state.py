"""The kit's Redis state on a real server: script semantics, and every key expires."""

from __future__ import annotations

import pytest
import redis

from celery_kit import Settings, make_app
from celery_kit.coordination.client import KitRedis, kit_redis
from celery_kit.coordination.dead_letter import DeadLetter
from celery_kit.coordination.dlq import DeadLetterStore
from celery_kit.coordination.idempotency import Claim, reserve, unreserve
from celery_kit.coordination.locks import Lock
from celery_kit.coordination.ratelimit import RateLimiter
from celery_kit.tasks.poison import _COUNT


@pytest.fixture
def kr(kit_redis_url: str) -> KitRedis:
    app = make_app("state", settings=Settings(_environ={}, broker_url=kit_redis_url))
    return kit_redis(app)


def test_claim_is_exclusive_reentrant_and_owner_checked(kr: KitRedis) -> None:
    key = kr.keys.idempotency("t", "k")
    mine, theirs = Claim(key, "mine", kr), Claim(key, "theirs", kr)
    assert mine.claim(task_id="1", lease_s=5).state == "claimed"
    assert mine.claim(task_id="1", lease_s=5).state == "claimed"  # a resent claim
    busy = theirs.claim(task_id="2", lease_s=5)
    assert (busy.state, busy.holder) == ("busy", "1")
    assert 0 < busy.pttl_ms <= 5000
    assert not theirs.release()
    assert not theirs.renew(5)
    assert mine.renew(5)
    assert mine.complete({"v": 1}, result_ttl_s=60, task_id="1")
    done = theirs.claim(task_id="2", lease_s=5)
    assert (done.state, done.result) == ("done", {"v": 1})
    assert not mine.renew(5)  # a finished claim is not renewed by a late renewal


def test_a_failed_run_releases_and_a_lost_claim_does_not_record(kr: KitRedis) -> None:
    key = kr.keys.idempotency("t", "f")
    first, second = Claim(key, "a", kr), Claim(key, "b", kr)
    assert first.claim(task_id="1", lease_s=5).state == "claimed"
    assert first.release()
    assert second.claim(task_id="2", lease_s=5).state == "claimed"
    # the first run's late completion must not overwrite the live second claim
    assert not first.complete("stale", result_ttl_s=60, task_id="1")
    assert second.complete("fresh", result_ttl_s=60, task_id="2")
    assert Claim(key, "c", kr).claim(task_id="3", lease_s=5).result == "fresh"


def test_enqueue_reservation(kr: KitRedis) -> None:
    key = kr.keys.idempotency("t", "r")
    assert reserve(kr, key, task_id="1", pending_ttl_s=60) is None
    assert reserve(kr, key, task_id="1", pending_ttl_s=60) is None  # same id: publish
    assert reserve(kr, key, task_id="2", pending_ttl_s=60) == "1"
    Claim(key, "tok", kr).claim(task_id="1", lease_s=5)
    assert reserve(kr, key, task_id="3", pending_ttl_s=60) == "1"  # running
    other = kr.keys.idempotency("t", "u")
    assert reserve(kr, other, task_id="9", pending_ttl_s=60) is None
    unreserve(kr, other, task_id="9")
    assert reserve(kr, other, task_id="10", pending_ttl_s=60) is None


def test_dlq_keeps_at_most_max_entries(kit_redis_url: str) -> None:
    app = make_app(
        "dlq",
        settings=Settings(_environ={}, broker_url=kit_redis_url, dlq={"max_entries": 3}),
    )
    store = DeadLetterStore(app)
    for i in range(5):
        store.add(_entry(str(i)))
    assert [e.id for e in store.list()] == ["4", "3", "2"]
    assert store.get("0") is None
    assert store.get("4") is not None
    assert store.delete("4")
    assert not store.delete("4")
    assert store.purge() == 2
    assert store.list() == []


def _entry(task_id: str) -> DeadLetter:
    return DeadLetter(
        id=task_id,
        task="t.x",
        args=[],
        kwargs={},
        reason="failed",
        exception_type="E",
        exception="e",
        traceback="",
        attempts=1,
    )


def test_every_key_the_kit_writes_is_namespaced_and_expires(kit_redis_url: str) -> None:
    app = make_app("keys", settings=Settings(_environ={}, broker_url=kit_redis_url))
    kr = kit_redis(app)
    client = redis.Redis.from_url(kit_redis_url)
    done = Claim(kr.keys.idempotency("t", "done"), "a", kr)
    done.claim(task_id="1", lease_s=5)
    done.complete(1, result_ttl_s=60, task_id="1")
    Claim(kr.keys.idempotency("t", "running"), "b", kr).claim(task_id="2", lease_s=5)
    reserve(kr, kr.keys.idempotency("t", "pending"), task_id="3", pending_ttl_s=60)
    assert Lock("held", ttl_s=5, app=app, renew=False).acquire()
    limiter = RateLimiter("r", "2/s", app=app)
    for _ in range(5):
        limiter.try_acquire(max_wait_s=5)
    DeadLetterStore(app).add(_entry("x"))
    kr.run(_COUNT, [kr.keys.worker_running("x"), kr.keys.worker_lost("x")], [60_000])
    keys = sorted(k.decode() for k in client.scan_iter("*"))
    assert len(keys) == 8, keys
    assert all(k.startswith("celery_kit:") for k in keys)
    assert all(client.pttl(k) > 0 for k in keys), {k: client.pttl(k) for k in keys}
