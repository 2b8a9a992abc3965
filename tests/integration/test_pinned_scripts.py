"""The kit's pinned script connection against a real Redis: replies read later, resends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from celery_kit import Settings
from celery_kit.coordination.client import KitRedis, make_client
from celery_kit.coordination.idempotency import Claim
from celery_kit.coordination.keys import Keys
from celery_kit.coordination.pinned import ScriptConn, Sent
from celery_kit.testing import RedisServer

pytestmark = pytest.mark.timeout(60)

_ECHO = "return ARGV[1]"


def pinned(url: str) -> KitRedis:
    client = make_client(url, Settings(_environ={}))
    return KitRedis(client=client, keys=Keys("t"), pinned=ScriptConn(client))


def test_a_reply_sent_without_waiting_is_read_by_the_next_call(kit_redis_url: str) -> None:
    kr = pinned(kit_redis_url)
    assert kr.pinned is not None
    seen: list[object] = []
    later = Sent(_ECHO, [], ["first"], on_done=lambda s: seen.append(s.value))
    kr.pinned.send(later)
    assert (kr.pinned.pending(), later.done) == (1, False)
    # When the next script runs, it reads both replies, in order
    assert kr.run(_ECHO, [], ["second"]) == b"second"
    assert (later.done, later.value, seen, kr.pinned.pending()) == (True, b"first", [b"first"], 0)


def test_a_completion_is_safe_to_send_twice(kit_redis_url: str) -> None:
    kr = pinned(kit_redis_url)
    claim = Claim("t:idem:twice", "token-1", kr)
    assert claim.claim(task_id="a", lease_s=10).state == "claimed"
    assert claim.complete({"n": 1}, result_ttl_s=60, task_id="a") is True
    # the same token again (a resend after a lost reply) still answers "recorded"
    assert claim.complete({"n": 1}, result_ttl_s=60, task_id="a") is True
    # another run's token is refused
    other = Claim("t:idem:twice", "token-2", kr)
    assert other.complete({"n": 2}, result_ttl_s=60, task_id="b") is False
    assert other.claim(task_id="b", lease_s=10).result == {"n": 1}


def test_noscript_on_a_live_connection_is_sent_again_as_text(kit_redis_url: str) -> None:
    kr = pinned(kit_redis_url)
    assert kr.pinned is not None
    assert kr.run(_ECHO, [], ["warm"]) == b"warm"  # the script went out as text once
    later = Sent(_ECHO, [], ["after-flush"])
    with redis.Redis.from_url(kit_redis_url) as admin:
        admin.script_flush()
    kr.pinned.send(later)  # EVALSHA now: the server answers NOSCRIPT
    kr.pinned.settle(later)
    assert (later.value, later.error) == (b"after-flush", None)


def test_a_connection_lost_before_the_reply_sends_the_command_again(kit_redis_url: str) -> None:
    kr = pinned(kit_redis_url)
    assert kr.pinned is not None
    claim = Claim("t:idem:lost", "token-1", kr)
    claim.claim(task_id="a", lease_s=10)
    sent = claim.completion({"n": 1}, result_ttl_s=60, task_id="a")
    with redis.Redis.from_url(kit_redis_url) as admin:
        mine = [c["id"] for c in admin.client_list() if c.get("cmd") in ("eval", "evalsha")]
        kr.pinned.send(sent)
        for client_id in mine:  # the pinned connection dies with the reply unread
            admin.client_kill_filter(_id=client_id)
        kr.pinned.settle(sent)
        assert (sent.value, sent.error) == (1, None)
        assert admin.hget("t:idem:lost", "s") == b"d"


def _send_and_settle(conn: ScriptConn, sent: Sent) -> None:
    conn.send(sent)
    conn.settle(sent)


def test_a_send_redis_never_confirmed_is_given_up_with_its_error(tmp_path: Path) -> None:
    with RedisServer(workdir=tmp_path) as server:
        kr = pinned(server.url(0))
        assert kr.pinned is not None
        kr.run(_ECHO, [], ["connect"])
        errors: list[Exception | None] = []
        sent = Sent(_ECHO, [], ["lost"], on_done=lambda s: errors.append(s.error))
        sent.give_up_at = 0.0  # already due
        server.stop()
        with pytest.raises(redis.ConnectionError):  # writing to a dead server fails, or
            _send_and_settle(kr.pinned, sent)  # reading the reply does (after the retries)
        assert kr.pinned.pending() == 1  # still queued, not silently dropped
        assert kr.pinned.give_up(float("inf"), redis.ConnectionError("down")) == 1
        assert kr.pinned.pending() == 0
        assert [type(e) for e in errors] == [redis.ConnectionError]


def test_a_forked_child_gets_its_own_pinned_connection(kit_redis_url: str) -> None:
    from celery_kit import make_app
    from celery_kit.coordination.client import kit_redis

    app = make_app("pinned_fork", settings=Settings(_environ={}, broker_url=kit_redis_url))
    parent = kit_redis(app)
    assert parent.pinned is not None
    parent.run(_ECHO, [], ["parent"])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's socket
        child = kit_redis(app)
        ok = child is not parent and child.pinned is not parent.pinned
        ok = ok and child.run(_ECHO, [], ["child"]) == b"child"
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert parent.run(_ECHO, [], ["parent-again"]) == b"parent-again"


def test_a_busy_pinned_connection_sends_other_threads_to_the_pool(kit_redis_url: str) -> None:
    kr = pinned(kit_redis_url)
    assert kr.pinned is not None
    kr.pinned._lock.acquire()  # another thread is mid-call on the pinned connection
    try:
        # a script runs on a pool connection instead of waiting (thread and green pools)
        assert kr.run(_ECHO, [], ["via-pool"]) == b"via-pool"
        # a send without waiting is refused, so the caller records synchronously
        assert kr.send(Sent(_ECHO, [], ["later"])) is False
    finally:
        kr.pinned._lock.release()
    assert kr.pinned.pending() == 0  # nothing was queued
    assert kr.send(Sent(_ECHO, [], ["later"])) is True
    kr.pinned.settle()
    assert kr.pinned.pending() == 0
