"""A duplicate delivery of a key another run holds: wait for that run's result, briefly.

The duplicate polls the claim in place for a moment, then is deferred with a growing
but capped countdown, so it returns the original's result soon after the original
finishes, not after a whole lease (docs/reliability.md states the bound).
"""

from __future__ import annotations

import random
import time

from celery_kit.coordination.idempotency import Claim, Outcome

__all__ = [
    "DUPLICATE_DEFER_BASE_S",
    "DUPLICATE_DEFER_MAX_S",
    "DUPLICATE_POLL_FIRST_S",
    "DUPLICATE_POLL_MAX_S",
    "DUPLICATE_WAIT_S",
    "await_holder",
    "duplicate_countdown",
]

#: A duplicate delivery whose key another run holds first waits in place this long,
#: polling the claim (first after 50 ms, doubling up to 0.5 s): a duplicate of a short
#: task returns the original's result at most ``DUPLICATE_POLL_MAX_S`` after it finished.
DUPLICATE_WAIT_S = 2.0
DUPLICATE_POLL_FIRST_S = 0.05
DUPLICATE_POLL_MAX_S = 0.5
#: If the holder still runs after that, the duplicate is deferred with a countdown that
#: doubles per deferral from the base up to the cap (never the whole lease): it returns
#: the result at most ``DUPLICATE_DEFER_MAX_S`` x 1.2 (jitter) after the holder finished.
DUPLICATE_DEFER_BASE_S = 0.5
DUPLICATE_DEFER_MAX_S = 5.0


def await_holder(claim: Claim, task_id: str, lease_s: float) -> Outcome:
    """Poll the claim while another run holds it, with backoff, for ``DUPLICATE_WAIT_S``.

    Returns the stored result once the holder finished ("done"), the claim if the holder
    gave it up (its body raised, or it died and the lease expired: "claimed"), or "busy"
    if it still runs when the wait is over.
    """
    deadline = time.monotonic() + DUPLICATE_WAIT_S
    pause = DUPLICATE_POLL_FIRST_S
    outcome = claim.claim(task_id=task_id, lease_s=lease_s)
    while outcome.state == "busy" and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(pause, left))
        pause = min(pause * 2.0, DUPLICATE_POLL_MAX_S)
        outcome = claim.claim(task_id=task_id, lease_s=lease_s)
    return outcome


def duplicate_countdown(deferrals: int, lease_s: float) -> float:
    """The countdown of a duplicate's next deferral: doubling, capped, never above the lease."""
    wait = min(DUPLICATE_DEFER_BASE_S * 2.0 ** min(deferrals, 16), DUPLICATE_DEFER_MAX_S, lease_s)
    return wait * random.uniform(1.0, 1.2)
