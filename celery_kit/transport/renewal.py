"""One thread per consuming channel: renew what the worker holds, restore what expired.

It runs in the worker's main process next to the event loop, not on it, so it keeps going
while a long task blocks the loop (solo pool) and under the prefork and threads pools.
Every ``renewal_interval`` it sends ONE script call that first retries deferred acks and
then refreshes the ``unacked_index`` score of every held message (prefetched, waiting for
its ETA, running); ``ZADD XX`` touches only entries that still exist, so an acked message
is never brought back. Every ``restore_interval`` it asks which entries are older than the
visibility timeout and, if any, restores them under the shared restore lock.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery_kit.transport.restore import restore_due
from celery_kit.transport.scripts import RENEW

__all__ = ["Keeper", "renew_once"]

logger = logging.getLogger(__name__)

#: Tags per renewal script call (Lua's unpack limit is far above; keeps calls short).
_CHUNK = 2000


def renew_once(channel: Any) -> list[str]:
    """Retry deferred acks and renew every held tag; returns tags that were gone.

    One round trip per ``_CHUNK`` held messages (one for any realistic prefetch).
    """
    qos = channel.__dict__.get("_qos")
    if qos is None:
        return []
    acks, held = qos.snapshot()
    if not acks and not held:
        return []
    script = channel.__dict__.get("_kit_renew")
    if script is None:
        script = channel.__dict__["_kit_renew"] = channel.kit_redis.register_script(RENEW)
    keys = [channel.key(channel.unacked_index_key), channel.key(channel.unacked_key)]
    missing: list[str] = []
    for start in range(0, max(len(held), 1), _CHUNK):
        chunk = held[start : start + _CHUNK]
        first = acks if start == 0 else []
        out = script(keys=keys, args=[len(first), *first, *chunk], client=channel.kit_redis)
        missing += [t.decode() if isinstance(t, bytes) else str(t) for t in out]
    if acks:
        qos.forget(*acks)
    return missing


class Keeper(threading.Thread):
    """Renewal and restore for one channel; stops when the channel closes."""

    def __init__(self, channel: Any) -> None:
        super().__init__(name="celery-kit-renewal", daemon=True)
        self._channel = channel
        self._stop_event = threading.Event()
        self._warned_at = 0.0

    def stop(self) -> None:
        """Ask the thread to stop (it does not wait)."""
        self._stop_event.set()

    def run(self) -> None:
        channel = self._channel
        renew_every = float(channel.renewal_interval)
        restore_every = float(channel.restore_interval)
        # a lock held longer than this was left by a dead restorer
        lock_ttl_s = max(10.0, 4 * restore_every)
        next_renew = time.monotonic() + renew_every
        next_restore = time.monotonic()  # a starting worker restores at once
        while not self._stop_event.is_set():
            now = time.monotonic()
            if now >= next_renew:
                next_renew = now + renew_every
                self._guard("renewal", lambda: self._renew(channel))
            if now >= next_restore:
                next_restore = now + restore_every
                self._guard("restore", lambda: restore_due(channel, lock_ttl_s=lock_ttl_s))
            self._stop_event.wait(max(0.0, min(next_renew, next_restore) - time.monotonic()))

    def _renew(self, channel: Any) -> None:
        missing = renew_once(channel)
        if missing:
            logger.warning(
                "%d messages this worker holds were restored meanwhile (renewal could not"
                " reach Redis for longer than the visibility timeout?); they may run twice:"
                " %s",
                len(missing),
                ", ".join(missing[:5]),
            )

    def _guard(self, what: str, step: Any) -> None:
        try:
            step()
        except Exception as exc:  # a broken Redis must not end the thread
            now = time.monotonic()
            if now - self._warned_at > 30:
                self._warned_at = now
                logger.warning("transport %s failed (retrying): %r", what, exc)
