"""The delay set on the broker's Redis: store, move due messages, read and cancel.

A member is ``<list key>\n<wake key>\n<kombu payload JSON>`` scored by its due time (epoch
seconds): the message as the transport would have put it, its queue (priority sub-list
included) and its wake-up key, so moving it is the transport's own put step
(:data:`celery_kit.transport.scripts.PUT`) run by :data:`~celery_kit.transport.scripts.MOVE`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kombu.utils.json import dumps, loads

from celery_kit.transport.scripts import COUNT_BY_LIST

if TYPE_CHECKING:
    from celery_kit.transport.redis import Channel

__all__ = [
    "Delayed",
    "cancel",
    "count",
    "count_by_list",
    "find",
    "iter_delayed",
    "move_due",
    "store",
]


@dataclass(frozen=True)
class Delayed:
    """One message waiting in the delay set."""

    due: float  #: Epoch seconds.
    queue_key: str  #: The list it moves to.
    payload: dict[str, Any]  #: kombu's message (headers, properties, encoded body).
    member: str  #: The raw member (for an exact ``ZREM``).

    @property
    def task_id(self) -> str:
        """The task id (Celery protocol 2 header ``id``)."""
        return str(self.payload.get("headers", {}).get("id", ""))

    @property
    def task_name(self) -> str:
        """The task name (header ``task``)."""
        return str(self.payload.get("headers", {}).get("task", ""))


def store(channel: Channel, queue: str, message: dict[str, Any], due: float) -> None:
    """Put ``message`` (bound for ``queue``) into the delay set, due at ``due``."""
    list_key, wake_key = channel.list_key(queue, message), channel.wake_key(queue)
    if "\n" in list_key or "\n" in wake_key:
        raise ValueError(f"queue name {queue!r} contains a newline; rename the queue")
    member = f"{list_key}\n{wake_key}\n{dumps(message)}"
    channel.kit_redis.zadd(channel.key(channel.delay_key), {member: due})


def move_due(channel: Channel, now: float, limit: int) -> tuple[int, list[float]]:
    """Move up to ``limit`` messages due at ``now`` (one round trip).

    Returns:
        How many members were taken from the set (moved, or malformed and set aside), and
        how late (s) each moved message was.
    """
    keys = [channel.key(channel.delay_key), channel.key(channel.malformed_key)]
    reply = channel._move(keys=keys, args=[repr(float(now)), int(limit)], client=channel.kit_redis)
    return int(reply[0]), [float(x) for x in reply[1:]]


def _parse(member: Any, score: float) -> Delayed | None:
    raw = member.decode() if isinstance(member, bytes) else str(member)
    parts = raw.split("\n", 2)
    if len(parts) != 3:
        return None
    try:
        return Delayed(float(score), parts[0], loads(parts[2]), raw)
    except (ValueError, TypeError):
        return None


def count(channel: Channel) -> int:
    """How many messages wait in the delay set."""
    return int(channel.kit_redis.zcard(channel.key(channel.delay_key)))


def count_by_list(client: Any, delay_key: str) -> dict[str, int]:
    """Delayed messages per destination list key (one server-side pass over the set)."""
    reply = client.eval(COUNT_BY_LIST, 1, delay_key)
    return {_text(reply[i]): int(reply[i + 1]) for i in range(0, len(reply), 2)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def iter_delayed(channel: Channel, *, limit: int | None = None) -> Iterator[Delayed]:
    """Delayed messages, earliest first (malformed members skipped)."""
    key = channel.key(channel.delay_key)
    start, page = 0, 500
    seen = 0
    while True:
        rows: list[Any] = channel.kit_redis.zrange(key, start, start + page - 1, withscores=True)
        for member, score in rows:
            item = _parse(member, float(score))
            if item is not None:
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
        if len(rows) < page:
            return
        start += page


def find(channel: Channel, task_id: str) -> Delayed | None:
    """The delayed message of ``task_id``, or None (already moved, or never delayed)."""
    key = channel.key(channel.delay_key)
    rows: Iterator[Any] = channel.kit_redis.zscan_iter(key, match=f"*{_glob(task_id)}*")
    for member, score in rows:
        item = _parse(member, float(score))
        if item is not None and item.task_id == task_id:
            return item
    return None


def cancel(channel: Channel, task_id: str) -> Delayed | None:
    """Remove ``task_id`` from the delay set; the removed message, or None if not there.

    ``ZREM`` of the exact member: if the mover took it meanwhile, nothing is removed and
    None is returned (the task is then in its queue).
    """
    item = find(channel, task_id)
    if item is None:
        return None
    removed = channel.kit_redis.zrem(channel.key(channel.delay_key), item.member)
    return item if removed else None


def _glob(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]\\" else c for c in text)
