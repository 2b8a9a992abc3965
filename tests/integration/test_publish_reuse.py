"""A producer reuses one pooled broker connection and channel across publishes.

Real Redis and RabbitMQ, a kit app as producer: the connects and channels the broker
clients (redis-py, py-amqp) open are counted while the app publishes; the messages are
then counted in the broker, so the publishes really happened.
"""

from __future__ import annotations

from typing import Any

import amqp
import pytest
import redis
from kombu import Connection

from celery_kit import Settings, make_app

pytestmark = pytest.mark.timeout(120)

#: Publishes after the first (which opens the pooled connection).
N = 200


def noop(i: int) -> None:
    """The published task (never run: no worker)."""


def _count_opens(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    opened = {"connections": 0, "channels": 0}
    amqp_connect, amqp_channel = amqp.Connection.connect, amqp.Connection.channel
    redis_connect = redis.connection.AbstractConnection.connect

    def count_amqp_connect(self: Any, *args: Any, **kwargs: Any) -> Any:
        opened["connections"] += 1
        return amqp_connect(self, *args, **kwargs)

    def count_amqp_channel(self: Any, channel_id: Any = None, **kwargs: Any) -> Any:
        if channel_id is None or channel_id not in self.channels:
            opened["channels"] += 1
        return amqp_channel(self, channel_id, **kwargs)

    def count_redis_connect(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self._sock is None:  # redis-py calls connect() before every command
            opened["connections"] += 1
        return redis_connect(self, *args, **kwargs)

    monkeypatch.setattr(amqp.Connection, "connect", count_amqp_connect)
    monkeypatch.setattr(amqp.Connection, "channel", count_amqp_channel)
    monkeypatch.setattr(redis.connection.AbstractConnection, "connect", count_redis_connect)
    return opened


def _queued(url: str, queue: str) -> int:
    with Connection(url) as conn:
        if conn.transport.driver_type == "amqp":
            _, ready, _ = conn.default_channel.queue_declare(queue=queue, passive=True)
            return int(ready)
        client = conn.default_channel.client  # one list per priority level on Redis
        lists = [k for k in client.scan_iter(match=f"{queue}*") if client.type(k) == b"list"]
        return sum(int(client.llen(k)) for k in lists)


@pytest.mark.parametrize("confirms", ["true", "false"])
def test_publishes_reuse_one_connection_and_channel(
    broker: tuple[str, str], confirms: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a kit producer whose first publish opened its pooled connection
    url, queue = broker
    env = {
        "CELERY_BROKER_URL": url,
        "CELERY_KIT_TASKS__DEFAULT_QUEUE": queue,
        "CELERY_KIT_BROKER__CONFIRM_PUBLISH": confirms,
    }
    app = make_app("reuse", settings=Settings(_environ=env))
    task = app.task(name="reuse.noop", shared=False, ignore_result=True)(noop)
    try:
        task.apply_async((0,))
        opened = _count_opens(monkeypatch)
        # When it publishes N more messages
        for i in range(1, N + 1):
            task.apply_async((i,))
        # Then no connection or channel was opened for them, and all reached the queue
        assert opened == {"connections": 0, "channels": 0}
        assert _queued(url, queue) == N + 1
    finally:
        app.close()
