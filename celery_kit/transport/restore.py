"""Putting unacknowledged messages back: one tag (reject, close) or every expired one.

Expired messages are restored by one restorer at a time (kombu's ``unacked_mutex`` key, a
redis-py ``Lock`` with a TTL, released by token), each by a compare-and-restore script
that leaves a message alone if it was acknowledged or renewed in the meantime.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from redis.exceptions import LockError

from celery_kit.transport.scripts import DUE, RESTORE

__all__ = ["restore_due", "restore_tag"]

logger = logging.getLogger(__name__)


def _scripts(channel: Any) -> tuple[Any, Any]:
    scripts: tuple[Any, Any] | None = channel.__dict__.get("_kit_restore_scripts")
    if scripts is None:
        client = channel.kit_redis
        scripts = (client.register_script(DUE), client.register_script(RESTORE))
        channel.__dict__["_kit_restore_scripts"] = scripts
    return scripts


def _targets(channel: Any, raw: bytes | None) -> tuple[str, list[tuple[str, str]]]:
    """The payload to push back (marked redelivered) and its ``(list key, queue)`` pairs."""
    if not raw:
        return "", []
    payload, exchange, routing_key = loads(bytes_to_str(raw))
    try:
        payload["headers"]["redelivered"] = True
        payload["properties"]["delivery_info"]["redelivered"] = True
    except (KeyError, TypeError):
        pass
    priority = channel._get_message_priority(payload, reverse=False)
    queues = [str(q) for q in channel._lookup(exchange, routing_key) if q]
    return dumps(payload), [(channel.key(channel._q_for_pri(q, priority)), q) for q in queues]


def _restore(channel: Any, tag: str, raw: bytes | None, *, ceiling: str, leftmost: bool) -> bool:
    _, restore = _scripts(channel)
    payload, targets = _targets(channel, raw)
    lists = [key for key, _ in targets]
    wakes = [channel.wake_key(queue) for _, queue in targets]
    keys = [channel.key(channel.unacked_index_key), channel.key(channel.unacked_key)]
    args = [tag, ceiling, payload, "1" if leftmost else "0", len(lists)]
    return bool(restore(keys=[*keys, *lists, *wakes], args=args, client=channel.kit_redis))


def restore_tag(channel: Any, tag: str, *, leftmost: bool) -> bool:
    """Put ``tag`` back in its queue now, if it is still unacknowledged.

    ``leftmost``: behind everything waiting (a rejected message), else in front (a message
    this worker took but will not run). Returns whether it was put back.
    """
    raw = channel.kit_redis.hget(channel.key(channel.unacked_key), tag)
    return _restore(channel, tag, raw, ceiling="+inf", leftmost=leftmost)


def restore_due(channel: Any, *, lock_ttl_s: float) -> int:
    """Restore every message unacknowledged for longer than the visibility timeout.

    Costs one script call when nothing is due. Returns how many were put back.
    """
    due, _ = _scripts(channel)
    client = channel.kit_redis
    index = channel.key(channel.unacked_index_key)
    ceiling, tags = due(keys=[index], args=[channel.visibility_timeout, channel.restore_limit])
    if not tags:
        return 0
    lock = client.lock(channel.key(channel.unacked_mutex_key), timeout=lock_ttl_s)
    if not lock.acquire(blocking=False):
        return 0  # another worker is restoring
    restored = 0
    try:
        tags = [bytes_to_str(t) for t in tags]
        raws = client.hmget(channel.key(channel.unacked_key), tags)
        for tag, raw in zip(tags, raws, strict=True):
            if _restore(channel, tag, raw, ceiling=bytes_to_str(ceiling), leftmost=False):
                restored += 1
    finally:
        try:
            lock.release()
        except LockError:
            logger.warning("restore lock expired before the restore finished")
    if restored:
        timeout = channel.visibility_timeout
        logger.info("restored %d messages unacknowledged for over %s s", restored, timeout)
    return restored
