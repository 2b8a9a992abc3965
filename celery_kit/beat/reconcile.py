"""Make RedBeat's entries in Redis equal to the config: add, update, delete, and log the diff.

RedBeat itself only deletes static entries it remembers having written (its ``statics``
set) and keeps every other hash it finds, so an entry created at runtime, or written by a
replica with another config, keeps being sent. Here the config is the only source: every
entry in the schedule sorted set that the config does not name is deleted.

What survives a change: an entry whose *schedule* is unchanged keeps its ``last_run_at``
(a restart neither repeats nor skips a run); a new entry, or one whose schedule changed,
starts as if it had just run, so it first runs at its next scheduled time. That also
holds when Redis lost the schedule (restart without persistence): the current slot is
assumed done, so a restart can delay one run but never repeat one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

__all__ = ["Diff", "reconcile"]

logger = logging.getLogger(__name__)


@dataclass
class Diff:
    """What a reconciliation changed, by entry name."""

    added: list[str] = field(default_factory=list)
    changed: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One log line: ``added [a], changed [b: schedule], removed [c], 2 unchanged``."""
        parts = []
        if self.added:
            parts.append(f"added [{', '.join(sorted(self.added))}]")
        if self.changed:
            shown = ", ".join(f"{k}: {v}" for k, v in sorted(self.changed.items()))
            parts.append(f"changed [{shown}]")
        if self.removed:
            parts.append(f"removed [{', '.join(sorted(self.removed))}]")
        parts.append(f"{len(self.unchanged)} unchanged")
        return ", ".join(parts)


def reconcile(
    client: redis.Redis,
    *,
    schedule_key: str,
    key_of: Callable[[str], str],
    wanted: Mapping[str, Any],
    encode: Callable[[Any], str],
    save: Callable[[Any, bool], None],
) -> Diff:
    """Write ``wanted`` (name -> scheduler entry) to Redis and delete every other entry.

    Args:
        client: RedBeat's Redis client (``decode_responses=True``).
        schedule_key: RedBeat's sorted set of entry keys.
        key_of: entry name -> its hash key.
        wanted: the entries of the config, as the scheduler's entry objects.
        encode: entry -> RedBeat's JSON ``definition`` (to compare with Redis).
        save: ``save(entry, fresh)`` writes one entry; ``fresh``: reset ``last_run_at``.
    """
    diff = Diff()
    present = [str(key) for key in client.zrange(schedule_key, 0, -1)]
    keys = {name: key_of(name) for name in wanted}
    with client.pipeline(transaction=False) as pipe:
        for key in keys.values():
            pipe.hget(key, "definition")
        stored = dict(zip(keys, pipe.execute(), strict=True))
    for name, entry in wanted.items():
        new = json.loads(encode(entry))
        old = json.loads(stored[name]) if stored[name] else None
        if old is None:
            diff.added.append(name)
            save(entry, True)
        elif old != new:
            what = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            diff.changed[name] = ", ".join(what)
            save(entry, old.get("schedule") != new.get("schedule"))
        else:
            diff.unchanged.append(name)
    by_key = {key: name for name, key in keys.items()}
    stale = [key for key in present if key not in by_key]
    if stale:
        with client.pipeline() as pipe:
            pipe.zrem(schedule_key, *stale)
            pipe.delete(*stale)
            pipe.execute()
        prefix = key_of("")
        diff.removed = [key.removeprefix(prefix) for key in stale]
    return diff
