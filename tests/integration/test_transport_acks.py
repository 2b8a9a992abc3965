"""Must-show 5: an acknowledged message is never brought back, by renewal or by restore,
however the two interleave with acks (real Redis, the transport's own code paths)."""

from __future__ import annotations

import threading

import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue

from celery_kit.transport import KIT_TRANSPORT
from celery_kit.transport.renewal import renew_once
from celery_kit.transport.restore import restore_due

pytestmark = pytest.mark.timeout(120)

ROUNDS = 2000


def _connection(url: str, **options: object) -> Connection:
    opts = {"priority_steps": list(range(10)), "sep": ":", "queue_order_strategy": "priority"}
    return Connection(url, transport=KIT_TRANSPORT, transport_options={**opts, **options})


QUEUE = Queue("q", Exchange("q", type="direct"), routing_key="q")


def _left(client: redis.Redis) -> tuple[int, int, int]:
    return int(client.llen("q")), int(client.hlen("unacked")), int(client.zcard("unacked_index"))


def test_acks_interleaved_with_renewal_and_restore_never_resurrect(kit_redis_url: str) -> None:
    client = redis.Redis.from_url(kit_redis_url)
    # a visibility timeout of 0.2 s makes every held message "due" almost at once, so the
    # restorer races each ack for real; renewal hammers the same entries meanwhile
    with _connection(kit_redis_url, visibility_timeout=0.2) as conn:
        channel = conn.channel()
        producer = Producer(channel)
        stop = threading.Event()
        errors: list[BaseException] = []

        def hammer(step: object) -> None:
            while not stop.is_set():
                try:
                    step()  # type: ignore[operator]
                    stop.wait(0.002)  # leave the GIL to the consumer now and then
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)
                    return

        threads = [
            threading.Thread(target=hammer, args=(lambda: renew_once(channel),)),
            threading.Thread(target=hammer, args=(lambda: restore_due(channel, lock_ttl_s=5),)),
        ]
        delivered = acked = 0
        for thread in threads:
            thread.start()
        try:
            for i in range(ROUNDS):
                producer.publish(
                    {"i": i}, exchange=QUEUE.exchange, routing_key="q", declare=[QUEUE]
                )
                # a restored message is delivered again: take until this one is acked
                while (message := channel.basic_get("q")) is not None:
                    delivered += 1
                    tag = message.delivery_tag
                    message.ack()
                    acked += 1
                    # Then the acked tag is gone, and stays gone
                    assert client.zscore("unacked_index", tag) is None
                    assert not client.hexists("unacked", tag)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert errors == []
        # nothing resurrected: no acked message waits anywhere
        restore_due(channel, lock_ttl_s=5)
        assert _left(client) == (0, 0, 0)
        assert delivered == acked >= ROUNDS


def test_a_restorer_that_read_a_tag_before_its_ack_does_not_bring_it_back(
    kit_redis_url: str,
) -> None:
    from celery_kit.transport.restore import _restore

    client = redis.Redis.from_url(kit_redis_url)
    with _connection(kit_redis_url, visibility_timeout=3600) as conn:
        channel = conn.channel()
        producer = Producer(channel)
        for i in range(ROUNDS):
            producer.publish({"i": i}, exchange=QUEUE.exchange, routing_key="q", declare=[QUEUE])
            message = channel.basic_get("q")
            tag = message.delivery_tag
            # the worst order: a restorer read the entry as due, then the ack landed
            raw = client.hget("unacked", tag)
            renew_once(channel)
            message.ack()
            renew_once(channel)
            assert not _restore(channel, tag, raw, ceiling="+inf", leftmost=False)
            assert _left(client) == (0, 0, 0)


def test_the_tag_is_read_right_when_a_header_has_the_same_name(kit_redis_url: str) -> None:
    client = redis.Redis.from_url(kit_redis_url)
    with _connection(kit_redis_url) as conn:
        channel = conn.channel()
        producer = Producer(channel)
        # a user header named like kombu's property makes the fast path ambiguous
        producer.publish(
            {"x": 1}, exchange=QUEUE.exchange, routing_key="q", declare=[QUEUE],
            headers={"delivery_tag": "not-the-tag"},
        )  # fmt: skip
        message = channel.basic_get("q")
        assert client.hkeys("unacked") == [message.delivery_tag.encode()]
        message.ack()
        assert _left(client) == (0, 0, 0)


def test_a_malformed_message_is_moved_aside_not_lost_or_fatal(kit_redis_url: str) -> None:
    client = redis.Redis.from_url(kit_redis_url)
    with _connection(kit_redis_url) as conn:
        channel = conn.channel()
        channel.queue_declare("q")
        client.lpush("q", b"not json at all", b'{"properties": {}}')
        assert channel.basic_get("q") is None
        assert channel.basic_get("q") is None
        assert client.lrange("_celery_kit.malformed", 0, -1) == [
            b'{"properties": {}}',
            b"not json at all",
        ]
        assert _left(client) == (0, 0, 0)
