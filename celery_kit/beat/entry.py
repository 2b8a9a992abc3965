"""``KitEntry``: RedBeat's schedule entry on the slot grid, with a correct due time.

* ``every_s`` entries record the slot a run stands for (the interval boundary at or before
  the send) as ``last_run_at``, so runs are aligned to multiples of the interval since the
  epoch, and a missed entry is due once, at the current slot;
* the next instance is NOT written to Redis here (RedBeat writes it unconditionally):
  ``KitScheduler.reserve`` writes it, fenced by the leader lease;
* ``due_at`` (the sorted set's score) is ``now + remaining``.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from typing import Any

from celery.schedules import schedstate
from celery.schedules import schedule as interval_schedule
from redbeat.schedulers import RedBeatSchedulerEntry, get_redis

from celery_kit.beat.codec import KitJSONEncoder, decode_definition, encode_definition

__all__ = ["KitEntry", "every_s_of", "slot_of", "utc"]


def every_s_of(sched: Any) -> float | None:
    if isinstance(sched, interval_schedule) and type(sched) is interval_schedule:
        return float(sched.seconds)
    return None


def slot_of(sched: Any, now: float) -> float:
    """Epoch seconds of the slot a run sent at ``now`` stands for: the interval boundary
    at or before ``now`` (``every_s``), the minute (cron: at most one run per minute)."""
    every = every_s_of(sched)
    step = every if every else 60.0
    return math.floor(now / step) * step


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


class KitEntry(RedBeatSchedulerEntry):  # type: ignore[misc]
    """RedBeat's entry with ``last_run_at`` on the slot grid for ``every_s`` entries."""

    @staticmethod
    def decode_definition(definition: str) -> dict[str, Any]:
        """RedBeat's ``definition`` JSON, with zoned cron entries (:mod:`.codec`)."""
        return decode_definition(definition)

    def save(self) -> KitEntry:
        """RedBeat's ``save`` with the kit's encoder (definition, meta if new, score)."""
        meta = json.dumps({"last_run_at": self.last_run_at}, cls=KitJSONEncoder)
        with get_redis(self.app).pipeline() as pipe:
            pipe.hset(self.key, "definition", encode_definition(self))
            pipe.hsetnx(self.key, "meta", meta)
            pipe.zadd(self.app.redbeat_conf.schedule_key, {self.key: self.score})
            pipe.execute()
        return self

    @property
    def due_at(self) -> Any:
        """When the entry is next due (the sorted set's score).

        RedBeat 2.4 returns ``last_run_at + remaining``, where ``remaining`` is counted from
        *now*: right only when the entry has just run. For an hourly entry aligned to the
        hour that puts the score in the past, and the entry is loaded (one round trip) at
        every loop. Here: ``now + remaining``.
        """
        if self.last_run_at is None:
            return self._default_now()
        delta = self.schedule.remaining_estimate(self.last_run_at)
        if delta is None:
            return None
        now = self._default_now()
        return now if delta.total_seconds() < 0 else now + delta

    def is_due(self) -> Any:
        due, next_s = super().is_due()
        every = every_s_of(self.schedule)
        if due and every:
            now = time.time()
            next_s = max(slot_of(self.schedule, now) + every - now, 0.01)
        return schedstate(due, next_s)

    def _next_instance(self, last_run_at: Any = None, only_update_last_run_at: bool = False) -> Any:
        """The entry after this run, NOT written to Redis: ``KitScheduler.reserve`` writes
        it, fenced by the leader lease (RedBeat writes it unconditionally here)."""
        if last_run_at is None and every_s_of(self.schedule):
            last_run_at = utc(slot_of(self.schedule, time.time()))
        # Celery's ScheduleEntry._next_instance: a new instance, nothing written
        entry = super(RedBeatSchedulerEntry, self)._next_instance(last_run_at=last_run_at)
        if only_update_last_run_at:
            entry.total_run_count = self.total_run_count
        return entry

    __next__ = next = _next_instance
