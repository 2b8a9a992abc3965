"""Redis only: take list items that are not kombu messages off the queue before kombu parses them.

kombu's Redis channel pops an item with ``BRPOP``, parses it and reads
``properties["delivery_tag"]`` before any consumer callback runs: a foreign item (not JSON,
a JSON list, a dict without ``properties``) raises there. A ``KeyError`` counts as a
connection error on this transport (the consumer reconnects forever), anything else stops
the worker. :func:`guard_channel` wraps the BRPOP reply parser of one channel's client: an
item that fails :func:`celery_kit.tasks.envelope.check_raw` is handed to ``on_problem`` (dead
letter, metric) and the reply becomes "nothing popped", which kombu handles as a timeout.

The item was already removed from the list by ``BRPOP`` and is not in kombu's unacked
index yet, so nothing else holds it: ``on_problem`` must keep it (the dead-letter store, or
the log when that fails). The wrapper is per channel (a reconnect builds a new channel and
the consumer step wraps it again), never a patch of kombu's classes.

With the kit's own Redis transport (``celery_kit.transport``, the default) nothing is
wrapped: the transport runs ``check_raw`` on each item it takes (its ``raw_check`` hook) and
hands a failing one to ``on_problem`` (its ``on_raw_problem`` hook) before acknowledging it;
an item it could not even read a delivery tag from is already safe on its malformed list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kombu.utils.encoding import bytes_to_str

from celery_kit.tasks.envelope import Problem, check_raw

__all__ = ["guard_channel"]

logger = logging.getLogger(__name__)

#: Attribute marking a client whose parser is already wrapped.
_MARK = "_celery_kit_envelope_guard"

#: What the kit's transport reports when it found no delivery tag it can record.
_NO_TAG = Problem("envelope", "not a kombu message: no usable properties.delivery_tag")

#: ``on_problem(item, queue, problem)``.
OnProblem = Callable[[bytes, str, Problem], None]


def guard_channel(channel: Any, on_problem: OnProblem, *, max_bytes: int) -> bool:
    """Check every item ``channel`` pops with BRPOP; False if it was guarded already.

    Args:
        channel: a ``kombu.transport.redis.Channel`` (the worker's task consumer channel).
        on_problem: called with the raw item, its queue and what is wrong; must not raise.
        max_bytes: ``tasks.max_message_bytes`` (an item far above it is not even parsed).
    """
    if hasattr(channel, "on_raw_problem"):  # the kit's transport checks items as it takes them
        return _guard_kit_channel(channel, on_problem, max_bytes=max_bytes)
    client = channel.client
    if getattr(client, _MARK, False):
        return False
    parse = client.parse_response
    sep = str(getattr(channel, "sep", ":"))

    def parse_response(connection: Any, command_name: Any, **options: Any) -> Any:
        reply = parse(connection, command_name, **options)
        if command_name != "BRPOP" or not reply:
            return reply
        try:
            dest, item = reply
            problem = check_raw(item, max_bytes=max_bytes)
        except Exception:  # a bug here must not take the worker down: let kombu decide
            logger.exception("celery_kit: could not check a Redis message; passing it on")
            return reply
        if problem is None:
            return reply
        # kombu names the queue the same way: the list key minus its priority suffix
        queue = bytes_to_str(dest).rsplit(sep, 1)[0]
        try:
            on_problem(item, queue, problem)
        except Exception:
            logger.exception("celery_kit: could not dead-letter a foreign Redis item: %r", item)
        return None  # kombu: "nothing popped" (Empty), the loop goes on

    client.parse_response = parse_response
    setattr(client, _MARK, True)
    return True


def _guard_kit_channel(channel: Any, on_problem: OnProblem, *, max_bytes: int) -> bool:
    if channel.on_raw_problem is not None:
        return False

    def on_raw_problem(item: bytes, queue: str, problem: Problem | None) -> None:
        on_problem(item, queue, problem or check_raw(item, max_bytes=max_bytes) or _NO_TAG)

    channel.raw_check = lambda item: check_raw(item, max_bytes=max_bytes)
    channel.on_raw_problem = on_raw_problem
    return True
