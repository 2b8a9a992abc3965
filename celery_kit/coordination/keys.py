"""The ONE Redis key builder: every key celery_kit writes is ``<redis.key_prefix>:<kind>:…``.

Each key is written with an expiry by the script that writes it (named per method below).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery_kit.config.settings import Settings

__all__ = ["Keys", "keys_of"]

#: User-supplied key parts longer than this are replaced by their SHA-1.
_MAX_PART = 200


@dataclass(frozen=True)
class Keys:
    """Builds every Redis key the kit uses: ``<prefix>:<kind>:<part>…``.

    Each method names the script that writes the key and its expiry.
    """

    prefix: str

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *(_safe(p) for p in parts)))

    def idempotency(self, task_name: str, key: str) -> str:
        """Claim/result hash of one idempotency key (lease, then ``result_ttl_s``)."""
        return self._key("idem", task_name, key)

    def lock(self, name: str) -> str:
        """A lock's token (the lock's TTL, renewed while held)."""
        return self._key("lock", name)

    def rate(self, name: str) -> str:
        """A token bucket (expires once it would be full again)."""
        return self._key("rate", name)

    def dlq_index(self) -> str:
        """Sorted set of dead-letter ids by time (``dlq.retention_s``, refreshed on write)."""
        return self._key("dlq", "index")

    def dlq_entry(self, task_id: str) -> str:
        """One dead letter, JSON (``dlq.retention_s``)."""
        return self._key("dlq", "entry", task_id)

    def worker_lost(self, task_id: str) -> str:
        """How often a task's pool process, or its whole worker, died running it
        (``dlq.worker_lost_ttl_s``)."""
        return self._key("lost", task_id)

    def worker_running(self, task_id: str) -> str:
        """Set while a *redelivered* task runs (cleared at its ack; ``dlq.worker_lost_ttl_s``):
        still there at the next redelivery means its worker died running it."""
        return self._key("running", task_id)

    def worker_heartbeat(self, hostname: str) -> str:
        """A worker's heartbeat, JSON (``health.max_age_s``, rewritten every tick)."""
        return self._key("health", "worker", hostname)

    def worker_heartbeats(self) -> str:
        """``SCAN`` pattern matching every worker heartbeat."""
        return f"{self.prefix}:health:worker:*"

    def pattern(self) -> str:
        """``SCAN`` pattern matching every key under the prefix."""
        return f"{self.prefix}:*"


def _safe(part: str) -> str:
    if len(part) <= _MAX_PART:
        return part
    return "sha1-" + hashlib.sha1(part.encode(), usedforsecurity=False).hexdigest()


def keys_of(settings: Settings) -> Keys:
    """The key builder for ``settings`` (``redis.key_prefix``)."""
    return Keys(settings.redis.key_prefix)
