"""The beat leader lease: taken or renewed in ONE round trip per loop, never blocking.

RedBeat takes its lock in a ``beat_init`` receiver that blocks until the lock is free,
and renews it at the top of ``tick``. Celery's signal dispatch logs and swallows a
receiver's exception (``celery/utils/dispatch/signal.py``), so a Redis error while the
lock is being taken leaves ``scheduler.lock`` unset; RedBeat versions whose ``tick`` tested
``if self.lock:`` then ticked without any lock (two senders), 2.4.x fails with
``AttributeError`` on ``None.extend`` and the beat process exits, and a renewal that meets
a restarted Redis raises ``LockNotOwnedError`` out of ``tick`` (exit too). The kit's
scheduler instead asks for the lease at every loop, from ``tick``, and treats any error
as "not the leader": a replica sends only in a loop that began with a successful renewal,
and only while that renewal's lease has not run out on its own clock.

What happens when things die:

* leader SIGKILLed: its lease expires after ``lock_timeout_s``; a standby takes it at its
  next loop (at most ``max_loop_interval_s`` later);
* Redis unreachable: every replica stops sending (no renewal, no lease); the first to
  reach Redis again takes the lease;
* Redis restarted without persistence: the lease is gone; one replica takes it, finds the
  reconciliation marker missing and writes the schedule from the config again.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

__all__ = ["Leadership", "Lease"]

logger = logging.getLogger(__name__)

#: KEYS: lock, marker. ARGV: token, lock ms, config digest, marker ms.
#: Returns 0: another replica leads; 1: leading, schedule up to date; 2: leading, the
#: schedule must be reconciled (marker missing or written from another config).
_HOLD = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif held then
  return 0
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  return 1
end
return 2
"""

#: KEYS: lock, entry hash, schedule sorted set. ARGV: token, meta JSON, score, member.
#: Records a run (the entry's new ``last_run_at`` and due time) only while the lease is
#: ours, in the same step: a replica that stalled past its lease cannot record, so it
#: does not send, and the new leader sees the slot as done if the old one recorded it.
_RECORD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'meta', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""

#: Owner-checked release (never a bare DEL).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Lease:
    """Outcome of one :meth:`Leadership.hold`."""

    leader: bool
    #: The schedule in Redis was not written from this replica's config (or was lost).
    needs_reconcile: bool = False
    error: str | None = None


class Leadership:
    """This replica's claim on the leader lock.

    Args:
        client: Redis client (RedBeat's, ``decode_responses=True``).
        lock_key: the lock's key.
        marker_key: key holding the digest of the config the schedule was written from.
        timeout_s: lease length.
        digest: digest of this replica's schedule config.
    """

    def __init__(
        self, client: redis.Redis, *, lock_key: str, marker_key: str, timeout_s: float, digest: str
    ) -> None:
        self.client = client
        self.lock_key, self.marker_key = lock_key, marker_key
        self.timeout_s = timeout_s
        self.digest = digest
        self.token = uuid.uuid4().hex
        #: Monotonic time until which this replica may send (0: not leading).
        self._valid_until = 0.0
        self._hold: Any = None
        self._record: Any = None

    def hold(self) -> Lease:
        """Take or renew the lease (one round trip). Never raises."""
        started = time.monotonic()
        try:
            if self._hold is None:
                self._hold = self.client.register_script(_HOLD)
            answer = int(
                self._hold(
                    keys=[self.lock_key, self.marker_key],
                    args=[self.token, _ms(self.timeout_s), self.digest, _ms(3 * self.timeout_s)],
                )
            )
        except Exception as exc:  # Redis away or restarted: not the leader until it answers
            self._valid_until = 0.0
            return Lease(False, error=f"{type(exc).__name__}: {exc}")
        if answer == 0:
            self._valid_until = 0.0
            return Lease(False)
        # the lease started no earlier than our request: count from there
        self._valid_until = started + self.timeout_s
        return Lease(True, needs_reconcile=answer == 2)

    def valid(self) -> bool:
        """Whether the last renewal's lease still runs (on this process's clock)."""
        return time.monotonic() < self._valid_until

    def record_run(self, *, key: str, schedule_key: str, meta: str, score: float) -> bool:
        """Write an entry's new ``meta`` and score if the lease is still ours (one round
        trip; replaces RedBeat's unconditional pipeline). False: do not send."""
        if self._record is None:
            self._record = self.client.register_script(_RECORD)
        args = [self.token, meta, score, key]
        return bool(self._record(keys=[self.lock_key, key, schedule_key], args=args))

    def mark_reconciled(self) -> None:
        """Record that the schedule now matches this replica's config."""
        self.client.set(self.marker_key, self.digest, px=_ms(3 * self.timeout_s))

    def release(self) -> None:
        """Give the lease up if still ours (shutdown), so a standby need not wait it out."""
        self._valid_until = 0.0
        try:
            self.client.eval(_RELEASE, 1, self.lock_key, self.token)
        except Exception as exc:
            logger.warning("beat: could not release the leader lock (%s); it expires", exc)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
