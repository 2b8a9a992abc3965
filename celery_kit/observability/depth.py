"""How many messages wait in a queue, and how old the oldest is, on Redis and RabbitMQ.

On Redis a kit queue ``q`` is one list per priority step (``q``, ``q:1`` … ``q:9`` with the
kit's ``sep=":"``); every list is counted, unlike tools that read ``LLEN q`` alone, and the
count of each list is kept (:attr:`QueueDepth.by_step`). RabbitMQ shows one count per queue:
how many messages wait at each priority cannot be seen there without consuming them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from celery_kit.topology.publish import PUBLISHED_AT_HEADER
from celery_kit.transport.delayed import count_by_list

if TYPE_CHECKING:
    from celery import Celery
    from kombu import Connection

__all__ = ["DepthReader", "QueueDepth", "redis_list_names"]

#: kombu's Redis defaults when the transport options set none (kombu/transport/redis.py).
_KOMBU_SEP = "\x06\x16"
_KOMBU_STEPS = (0, 3, 6, 9)


@dataclass(frozen=True)
class QueueDepth:
    """What the broker says about one queue."""

    queue: str
    #: Messages waiting (not yet delivered to a worker); ``None``: the broker could not say
    #: (RabbitMQ: the queue is not declared).
    messages: int | None
    #: Seconds since the oldest waiting message was published (Redis, kit-stamped
    #: messages only); ``None``: empty queue, unknown, or RabbitMQ.
    oldest_age_s: float | None = None
    #: Consumers attached (RabbitMQ only).
    consumers: int | None = None
    #: Messages waiting in the delay set for this queue (Redis with the kit's transport).
    delayed: int | None = None
    #: Redis: ``(broker priority step, messages)`` for each of the queue's lists, in
    #: ``priority_steps`` order (step 0 is the list BRPOP reads first); empty on RabbitMQ.
    by_step: tuple[tuple[int, int], ...] = ()


def redis_list_names(queue: str, *, sep: str, priority_steps: Iterable[int]) -> list[str]:
    """The Redis lists holding ``queue``: one per priority step.

    Mirrors kombu's ``Channel._q_for_pri``: step 0 is the bare name, step ``n`` is
    ``f"{queue}{sep}{n}"``.
    """
    return [name for _, name in _redis_lists(queue, sep=sep, priority_steps=priority_steps)]


def _redis_lists(queue: str, *, sep: str, priority_steps: Iterable[int]) -> list[tuple[int, str]]:
    """``(step, list name)`` of ``queue``, one per distinct list (kombu's ``_q_for_pri``)."""
    found: dict[str, int] = {}
    for step in priority_steps:
        found.setdefault(queue if not step else f"{queue}{sep}{step}", step)
    return [(step, name) for name, step in found.items()]


class DepthReader:
    """Reads queue depths over its own broker connection (never the consumer's).

    Keep one per poller: the connection is reused between calls and reopened after an
    error. Every broker call is bounded by ``timeout_s``.

    Args:
        app: the Celery app (its broker URL and transport options are used).
        timeout_s: connect and read timeout of every broker call.
    """

    def __init__(self, app: Celery, *, timeout_s: float = 2.0) -> None:
        self._app = app
        self._timeout_s = timeout_s
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self._app.connection_for_read()
            t = self._timeout_s
            # a copy: the dict may be the app's own broker_transport_options
            options = dict(conn.transport_options or {})
            if conn.transport.driver_type == "redis":
                options.update(socket_timeout=t, socket_connect_timeout=t)
            else:
                options.update(read_timeout=t, write_timeout=t)
            conn.transport_options = options
            conn.connect_timeout = t
            self._conn = conn
        return self._conn

    @property
    def is_redis(self) -> bool:
        """True when the broker is Redis."""
        return self._connection().transport.driver_type == "redis"

    def read(
        self, queues: Iterable[str], *, oldest: bool = False, now: float | None = None
    ) -> dict[str, QueueDepth]:
        """Depth of every queue in ``queues``.

        Args:
            queues: queue names.
            oldest: also find the age of the oldest message (Redis only; reads one
                message per priority list).
            now: the current epoch time (tests).

        Raises:
            Exception: kombu/redis/amqp connection errors; the connection is closed and
                reopened on the next call.
        """
        names = list(dict.fromkeys(queues))
        try:
            conn = self._connection()
            # no retry, no sleep: the heartbeat calls this from the worker's event loop
            conn.ensure_connection(max_retries=0, timeout=math.ceil(self._timeout_s))
            if conn.transport.driver_type == "redis":
                return self._read_redis(conn, names, oldest, now)
            return self._read_amqp(conn, names)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection (the next :meth:`read` opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                conn.release()

    def _read_redis(
        self, conn: Connection, queues: list[str], oldest: bool, now: float | None
    ) -> dict[str, QueueDepth]:
        channel: Any = conn.default_channel
        sep = str(getattr(channel, "sep", _KOMBU_SEP))
        steps = list(getattr(channel, "priority_steps", _KOMBU_STEPS))
        prefix = str(getattr(channel, "global_keyprefix", "") or "")
        # A plain client on kombu's pool: kombu's own client adds global_keyprefix to some
        # commands only (not LINDEX), so the kit prefixes every key itself.
        client = redis.Redis(connection_pool=channel.client.connection_pool)
        lists = {
            q: [
                (step, prefix + name)
                for step, name in _redis_lists(q, sep=sep, priority_steps=steps)
            ]
            for q in queues
        }
        # one round trip for every list of every queue (the per-step counts come with it)
        with client.pipeline(transaction=False) as pipe:
            for keyed in lists.values():
                for _, key in keyed:
                    pipe.llen(key)
                    if oldest:
                        pipe.lindex(key, -1)  # kombu LPUSHes and BRPOPs: the tail is oldest
            replies = pipe.execute()
        now = time.time() if now is None else now
        out: dict[str, QueueDepth] = {}
        per_key = 2 if oldest else 1
        at = 0
        for queue, keyed in lists.items():
            counts: list[tuple[int, int]] = []
            stamps: list[float] = []
            for step, _ in keyed:
                counts.append((step, int(replies[at] or 0)))
                if oldest and replies[at + 1] is not None:
                    stamp = _published_at(replies[at + 1])
                    if stamp is not None:
                        stamps.append(stamp)
                at += per_key
            age = max(0.0, now - min(stamps)) if stamps else None
            total = sum(n for _, n in counts)
            out[queue] = QueueDepth(queue, total, age, by_step=tuple(counts))
        delay_key = str(getattr(channel, "delay_key", "") or "")
        if delay_key:
            per_list = count_by_list(client, prefix + delay_key)
            for queue, keyed in lists.items():
                delayed = sum(per_list.get(k, 0) for _, k in keyed)
                out[queue] = dataclasses.replace(out[queue], delayed=delayed)
        return out

    def _read_amqp(self, conn: Connection, queues: list[str]) -> dict[str, QueueDepth]:
        out: dict[str, QueueDepth] = {}
        channel: Any = conn.channel()
        try:
            for queue in queues:
                try:
                    _, messages, consumers = channel.queue_declare(queue=queue, passive=True)
                except conn.channel_errors:
                    # NOT_FOUND closes the channel on RabbitMQ: open another for the rest
                    out[queue] = QueueDepth(queue, None)
                    channel = conn.channel()
                    continue
                out[queue] = QueueDepth(queue, int(messages), None, int(consumers))
        finally:
            with contextlib.suppress(Exception):  # the broker may have closed it already
                channel.close()
        return out


def _published_at(payload: bytes | str) -> float | None:
    try:
        message = json.loads(payload)
        value = message["headers"][PUBLISHED_AT_HEADER]
        return float(value)
    except (ValueError, KeyError, TypeError):
        return None
