"""``[delays]``: where countdowns/ETAs wait on Redis (the delay set) and how they move."""

from __future__ import annotations

from pydantic import Field

from celery_kit.config.sections import KitModel

__all__ = [
    "DELAY_THRESHOLD_MARGIN_S",
    "DUE_AT_HEADER",
    "MAX_DELAY_S",
    "DelaysSettings",
    "delay_key",
]

#: Message header holding the due time (epoch seconds) of a message routed to the delay
#: set. The publish path writes it; the kit's transport stores such a message in the
#: delay set instead of its queue.
DUE_AT_HEADER = "kit_due_at"

#: Sanity bound on a countdown/ETA when the delay set takes it: one year.
MAX_DELAY_S = 365 * 24 * 3600.0

#: The delay threshold is this much above the mover's interval: a message due sooner is
#: published to its queue at once (the worker holds it the few seconds left, renewed by
#: the kit transport); a later one waits in the delay set.
DELAY_THRESHOLD_MARGIN_S = 3.0


class DelaysSettings(KitModel):
    """``[delays]``: the delay set and its mover (Redis broker with the kit's transport)."""

    #: Route long countdowns/ETAs to the delay set. Only takes effect with a Redis
    #: broker and ``broker.transport = "kit"``; elsewhere ``tasks.max_countdown_s`` guards.
    enabled: bool = True
    #: Longest countdown/ETA accepted when the delay set is in use (a typo guard).
    max_delay_s: float = Field(default=MAX_DELAY_S, gt=0)
    #: Delays up to this go straight to the queue; ``None``: derived
    #: (``mover_interval_s`` + 3 s).
    threshold_s: float | None = Field(default=None, ge=0)
    #: How often the mover looks for due messages.
    mover_interval_s: float = Field(default=1.0, gt=0, le=60)
    #: Most messages moved per Redis round trip.
    batch: int = Field(default=500, ge=1, le=10_000)
    #: The mover's leader lock TTL (renewed every third of it while held).
    lock_ttl_s: float = Field(default=15.0, gt=0)
    #: Run a mover inside every worker's main process (only the leader moves).
    mover_in_worker: bool = True

    @property
    def effective_threshold_s(self) -> float:
        """The threshold in force (given, or derived from the mover's interval)."""
        if self.threshold_s is not None:
            return self.threshold_s
        return self.mover_interval_s + DELAY_THRESHOLD_MARGIN_S


def delay_key(key_prefix: str) -> str:
    """The delay set's key in the broker's Redis for an app whose kit prefix is given."""
    return f"_celery_kit.delayed.{key_prefix}"
