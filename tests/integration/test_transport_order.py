"""The kit's transport hands out messages in exactly the order kombu's does: priority
step by priority step across the consumed queues (same keys, same Redis)."""

from __future__ import annotations

import random

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue

from celery_kit.testing import RedisServer

pytestmark = pytest.mark.timeout(120)

OPTIONS = {"priority_steps": list(range(10)), "sep": ":", "queue_order_strategy": "priority"}
QUEUES = [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in "abc"]


def _publish(url: str, plan: list[tuple[str, int, int]]) -> None:
    with Connection(url, transport_options=OPTIONS) as conn:  # kombu's publish path
        producer = Producer(conn.channel())
        for queue, priority, i in plan:
            exchange = next(q.exchange for q in QUEUES if q.name == queue)
            producer.publish({"i": i}, exchange=exchange, routing_key=queue, priority=priority,
                             declare=QUEUES)  # fmt: skip


def _drain(url: str, transport: str | None, count: int) -> list[int]:
    got: list[int] = []
    with Connection(url, transport=transport, transport_options=OPTIONS) as conn:
        channel = conn.channel()

        def on_message(body: dict[str, int], message: object) -> None:
            got.append(body["i"])
            message.ack()  # type: ignore[attr-defined]

        with Consumer(channel, QUEUES, callbacks=[on_message]):
            channel.basic_qos(0, 1, False)
            while len(got) < count:
                conn.drain_events(timeout=5)
    return got


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_delivery_order_is_kombus(kit_redis_server: RedisServer, seed: int) -> None:
    rng = random.Random(seed)
    plan = [(rng.choice("abc"), rng.randrange(10), i) for i in range(60)]
    orders = {}
    for transport in ("redis", "celery_kit.transport.redis:Transport"):
        db = kit_redis_server.fresh_db()
        url = kit_redis_server.url(db)
        _publish(url, plan)
        orders[transport] = _drain(url, transport, len(plan))
        with redis.Redis.from_url(url) as client:  # closed here, not by the garbage collector
            assert client.hlen("unacked") == 0
    assert orders["celery_kit.transport.redis:Transport"] == orders["redis"]
    assert sorted(orders["redis"]) == list(range(60))
