"""The mover puts a delayed message exactly as publish does: the same list (the priority
sub-list included) and the same wake-up token, on a real Redis."""

from __future__ import annotations

import json
import time

import pytest
import redis

from celery_kit.delays.mover import Mover
from celery_kit.testing import RedisServer
from celery_kit.transport.scripts import PUT, WAKE_TOKEN, put
from tests.integration.support.delays import delayed_ids, delays_env, producer

pytestmark = pytest.mark.timeout(60)


def test_the_script_and_the_pipeline_put_write_the_same(kit_redis_server: RedisServer) -> None:
    client = kit_redis_server.client(kit_redis_server.fresh_db())
    # Given the same payload put by the pipeline form and by the Lua form
    with client.pipeline(transaction=False) as pipe:
        put(pipe, "a", "a.wake", '{"m": 1}')
        put(pipe, "a", "a.wake", '{"m": 2}')
        pipe.execute()
    run = client.register_script(PUT + "put(KEYS[1], KEYS[2], ARGV[1])\nreturn 1")
    run(keys=["b", "b.wake"], args=['{"m": 1}'])
    run(keys=["b", "b.wake"], args=['{"m": 2}'])
    # Then both lists and both wake-up keys hold the same, in the same order
    assert client.lrange("a", 0, -1) == client.lrange("b", 0, -1) == [b'{"m": 2}', b'{"m": 1}']
    token = [(WAKE_TOKEN.encode(), 0.0)]
    assert client.zrange("a.wake", 0, -1, withscores=True) == token
    assert client.zrange("b.wake", 0, -1, withscores=True) == token


def _where(broker: redis.Redis) -> dict[str, str]:
    """Task id -> the list key holding it."""
    out = {}
    for key in broker.scan_iter(match="default*"):
        if broker.type(key) == b"list":
            for raw in broker.lrange(key, 0, -1):
                out[json.loads(raw)["headers"]["id"]] = key.decode()
    return out


def test_a_moved_message_lands_where_a_publish_puts_it(
    kit_redis_server: RedisServer, kit_redis_url: str
) -> None:
    env = delays_env(kit_redis_server.url(kit_redis_server.fresh_db()), kit_redis_url)
    app = producer(env)
    broker = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    try:
        # Given, for each of three priorities, one message published for now and one delayed
        now, later = {}, {}
        for priority in (0, 5, 9):
            now[priority] = app.send_task("kit_delays.record", ["n"], priority=priority).id
            later[priority] = app.send_task(
                "kit_delays.record", ["l"], priority=priority, countdown=3600
            ).id
        assert sorted(delayed_ids(app)) == sorted(later.values())
        for key in broker.scan_iter(match="*wake*"):
            broker.delete(key)  # so only the mover can have written a token
        # When the mover moves them (its clock two hours ahead)
        mover = Mover(app, clock=lambda: time.time() + 7200)
        assert mover.move_due() == 3
        mover.stop()
        # Then each moved message is in the list its published twin went to
        where = _where(broker)
        for priority in (0, 5, 9):
            assert where[later[priority]] == where[now[priority]], (priority, where)
        assert len(set(where.values())) > 1, "the priorities use distinct sub-lists"
        # And the queue's wake-up key holds the one token, as a publish leaves it
        wakes = list(broker.scan_iter(match="*wake*"))
        assert len(wakes) == 1, wakes
        assert broker.zrange(wakes[0], 0, -1, withscores=True) == [(WAKE_TOKEN.encode(), 0.0)]
        assert delayed_ids(app) == []
    finally:
        broker.close()
        app.close()
