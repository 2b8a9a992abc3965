"""Ack emulation of the kit's transport: the pop script already recorded the message."""

from __future__ import annotations

import logging
import threading
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import QoS as VirtualQoS

from celery_kit.transport import restore as _restore

__all__ = ["KitQoS"]

logger = logging.getLogger(__name__)


class KitQoS(kombu_redis.QoS):
    """Tracks what this channel holds (for renewal); acks and restores through Lua.

    ``held`` and ``pending_acks`` are read by the renewal thread, so they change under a
    lock (kombu's own ``_delivered`` may only be touched by the consuming thread).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self.held: dict[str, None] = {}
        self.pending_acks: set[str] = set()

    def append(self, message: Any, delivery_tag: str) -> None:
        # The POP script recorded it in unacked/unacked_index already: no round trip here.
        with self._lock:
            self.held[delivery_tag] = None
        VirtualQoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        try:
            self.channel.ack_tags([delivery_tag])
        except self.channel.connection_errors as exc:
            # Still held (so renewed, so nobody else gets it); the renewal thread retries.
            logger.warning("ack of %s deferred to the renewal thread: %r", delivery_tag, exc)
            with self._lock:
                self.pending_acks.add(delivery_tag)
        else:
            self.forget(delivery_tag)
        VirtualQoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            _restore.restore_tag(self.channel, delivery_tag, leftmost=True)
            self.forget(delivery_tag)
            VirtualQoS.ack(self, delivery_tag)
        else:
            self.ack(delivery_tag)

    def forget(self, *tags: str) -> None:
        """Stop renewing ``tags`` (acked, rejected or restored)."""
        with self._lock:
            for tag in tags:
                self.held.pop(tag, None)
                self.pending_acks.discard(tag)

    def snapshot(self) -> tuple[list[str], list[str]]:
        """``(tags to ack, tags to renew)`` for one renewal round trip."""
        with self._lock:
            acks = sorted(self.pending_acks)
            return acks, [t for t in self.held if t not in self.pending_acks]

    def restore_unacked(self, client: Any = None) -> None:
        """At channel close: put back what this channel still holds (front of its queue).

        If Redis is unreachable the rest stays unacknowledged and comes back after the
        visibility timeout (nobody renews it any more).
        """
        with self._lock:
            acks = sorted(self.pending_acks)
            tags = [t for t in self._delivered if t not in self.pending_acks]
        try:
            self.channel.ack_tags(acks)
            for tag in tags:
                _restore.restore_tag(self.channel, tag, leftmost=False)
        except self.channel.connection_errors as exc:
            logger.warning(
                "could not put back %d held messages at close (%r); they return after the"
                " visibility timeout",
                len(tags),
                exc,
            )
        self._delivered.clear()
        with self._lock:
            self.held.clear()

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        """Disabled: the renewal thread restores expired messages (every few seconds)."""

    def restore_by_tag(self, tag: str, client: Any = None, leftmost: bool = False) -> None:
        _restore.restore_tag(self.channel, tag, leftmost=leftmost)
        self.forget(tag)
