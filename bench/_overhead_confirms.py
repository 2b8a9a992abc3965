"""bench.overhead: what publisher confirms cost on RabbitMQ, without Celery in the way.

Three py-amqp producers publish the same persistent message to a durable queue: without
confirms, waiting for the confirm of each message (what kombu's ``confirm_publish`` does),
and publishing a whole batch before waiting once for every confirm (what kombu's
``Producer`` does not offer). The difference is the price of the guarantee itself.
"""

from __future__ import annotations

import time
from typing import Any

from amqp import Message
from kombu import Connection

BODY = b'[[1], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'
MODES = ("py-amqp: no confirms", "py-amqp: confirm each", "py-amqp: confirm per batch")


class RawProducer:
    """One connection and channel per mode, kept open across runs."""

    def __init__(self, url: str, queue: str, mode: str) -> None:
        self.queue, self.mode = queue, mode
        self.conn = Connection(url)
        self.conn.connect()
        self.channel: Any = self.conn.connection.channel()
        self.channel.queue_declare(queue, durable=True, auto_delete=False)
        self.acked = 0
        if mode != MODES[0]:
            self.channel.confirm_select()
            self.channel.events["basic_ack"].add(self._on_ack)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self.acked = max(self.acked, delivery_tag)

    def publish(self, n: int) -> None:
        """Publish ``n`` messages; return when the mode's guarantee holds for all."""
        send = self.channel.basic_publish_confirm if self.mode == MODES[1] else None
        sent = self.acked if self.mode == MODES[2] else 0
        for _ in range(n):
            msg = Message(BODY, delivery_mode=2, content_type="application/json")
            (send or self.channel.basic_publish)(msg, exchange="", routing_key=self.queue)
        if self.mode == MODES[2]:
            deadline = time.monotonic() + 60
            while self.acked < sent + n and time.monotonic() < deadline:
                self.conn.connection.drain_events(timeout=5)

    def close(self) -> None:
        try:
            self.channel.queue_delete(self.queue)
        finally:
            self.conn.release()
