"""Keep Redis leases (locks, idempotency claims) alive while their holder runs.

One daemon thread per keeper renews every registered lease at a third of its TTL.
Registering and dropping a lease is a dictionary operation under a mutex; the thread
wakes at most once a second when nothing is due, ends after a second without leases,
and never talks to Redis for a lease dropped before its first renewal (the common case:
short tasks cost no renewals).

What happens when things die:

* holder SIGKILLed (or the whole worker): the thread dies with the process, renewals
  stop, and the lease expires after its TTL;
* lease found lost (expired while Redis was away, or the process was frozen for longer
  than the TTL): the lease is dropped, a warning logged, ``on_lost`` called; the task
  body keeps running (it cannot be interrupted safely) and its final write is
  owner-checked;
* Redis unreachable during a renewal: logged, retried after a tenth of the TTL.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LeaseHandle", "LeaseKeeper"]

logger = logging.getLogger(__name__)

#: Longest idle sleep of the renewal thread.
_IDLE_S = 1.0


@dataclass
class _Lease:
    renew: Callable[[], bool]
    interval_s: float
    due: float
    what: str
    on_lost: Callable[[], None] | None


@dataclass(frozen=True)
class LeaseHandle:
    """Returned by :meth:`LeaseKeeper.keep`; pass it to :meth:`LeaseKeeper.drop`."""

    ident: int


class LeaseKeeper:
    """Renews registered leases from one daemon thread (started lazily, per process).

    Args:
        name: the thread's name (visible in ``py-spy`` and thread dumps).
    """

    def __init__(self, *, name: str = "celery-kit-leases") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._leases: dict[int, _Lease] = {}
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._wake_at = 0.0

    def keep(
        self,
        renew: Callable[[], bool],
        *,
        ttl_s: float,
        what: str,
        on_lost: Callable[[], None] | None = None,
        first_s: float | None = None,
    ) -> LeaseHandle:
        """Call ``renew`` every ``ttl_s / 3`` (the first time after ``first_s`` if given)
        until dropped; ``renew`` returns False if lost. ``renew`` may drop its own handle."""
        interval = max(ttl_s / 3.0, 0.05)
        if self._pid != os.getpid():  # forked: the parent's thread and mutex are not ours
            self._pid, self._thread, self._leases = os.getpid(), None, {}
            self._cond = threading.Condition()
        with self._cond:
            self._ensure_thread()
            ident = next(self._ids)
            due = time.monotonic() + (interval if first_s is None else first_s)
            self._leases[ident] = _Lease(renew, interval, due, what, on_lost)
            if due < self._wake_at:
                self._cond.notify()
        return LeaseHandle(ident)

    def drop(self, handle: LeaseHandle) -> None:
        """Stop renewing (the caller releases the lease itself)."""
        with self._cond:
            self._leases.pop(handle.ident, None)

    def held(self) -> int:
        """How many leases are being renewed (for tests and diagnostics)."""
        with self._cond:
            return len(self._leases)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._leases:  # idle: linger a moment, then let the thread end
                    self._wake_at = time.monotonic() + _IDLE_S
                    self._cond.wait(_IDLE_S)
                    if not self._leases:
                        self._thread = None
                        return
                now = time.monotonic()
                due = [(i, lease) for i, lease in self._leases.items() if lease.due <= now]
                if not due:
                    nearest = min(lease.due for lease in self._leases.values())
                    self._wake_at = min(now + _IDLE_S, nearest)
                    self._cond.wait(max(self._wake_at - now, 0.005))
                    continue
            for ident, lease in due:
                self._renew(ident, lease)

    def _renew(self, ident: int, lease: _Lease) -> None:
        try:
            still_ours = lease.renew()
        except Exception as exc:  # Redis away: try again soon, the TTL still runs
            logger.warning("celery_kit: could not renew %s (%s); retrying", lease.what, exc)
            lease.due = time.monotonic() + max(lease.interval_s * 0.3, 0.05)
            return
        if still_ours:
            lease.due = time.monotonic() + lease.interval_s
            return
        with self._cond:
            if self._leases.pop(ident, None) is None:
                return  # dropped while we renewed: the holder already finished
        logger.warning(
            "celery_kit: lost %s: it expired before it could be renewed (Redis was"
            " unreachable or this process stalled); another holder may now run",
            lease.what,
        )
        if lease.on_lost is not None:
            try:
                lease.on_lost()
            except Exception:
                logger.exception("celery_kit: on_lost callback for %s failed", lease.what)
