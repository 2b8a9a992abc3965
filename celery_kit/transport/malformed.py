"""List items the transport cannot deliver: handed to the worker's dead-letter hook or kept.

An item the POP script could not read a delivery tag from is already on the list
``_celery_kit.malformed`` (moved there in the same step that popped it, so it is never
lost). An item with a tag that fails the channel's ``raw_check`` (or does not parse) is
recorded as unacknowledged: it is handed over first and forgotten after, so a crash in
between brings it back rather than losing it.

The worker's consumer step sets ``channel.raw_check`` and ``channel.on_raw_problem``
(``celery_kit.tasks.redis_guard``): dead-lettered items are taken off the malformed list
again. Without them, items stay on the list (newest 1,000) and are logged.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["MALFORMED_MAX", "refuse"]

logger = logging.getLogger(__name__)

#: Malformed payloads kept on the list (newest first).
MALFORMED_MAX = 1000


def refuse(
    channel: Any, item: bytes, queue: str, *, tag: str | None, problem: Any, moved: bool
) -> None:
    """Take ``item`` (popped from ``queue``) out of circulation; never raises.

    Args:
        channel: the kit transport's channel that popped it.
        item: the raw list item.
        queue: the queue it came from.
        tag: its delivery tag when the POP script recorded it as unacknowledged.
        problem: what ``raw_check`` found (``None``: no tag, or not parseable).
        moved: the POP script already pushed it onto the malformed list.
    """
    handled = False
    if channel.on_raw_problem is not None:
        try:
            channel.on_raw_problem(item, queue, problem)
            handled = True
        except Exception:
            logger.exception("could not hand a malformed item from %r to the worker", queue)
    try:
        key = channel.key(channel.malformed_key)
        with channel.kit_redis.pipeline(transaction=False) as pipe:
            if handled and moved:
                pipe.lrem(key, 1, item)
            elif not handled and not moved:
                pipe.lpush(key, item)
                pipe.ltrim(key, 0, MALFORMED_MAX - 1)
            pipe.execute()
        if tag:
            channel.ack_tags([tag])
    except channel.connection_errors as exc:
        logger.warning("malformed item from %r: Redis unreachable (%r); it comes back", queue, exc)
    if not handled:
        logger.error(
            "malformed message in queue %r moved to Redis list %r (%s): %.200r",
            queue,
            channel.malformed_key,
            problem or "not a kombu message with a delivery tag",
            item,
        )
