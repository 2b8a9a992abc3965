"""Alerting rules for beat (``[beat]``): an entry not sent for two intervals, no single
leader, runs skipped because the previous one still ran. Rendered only when beat is on."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from typing import Any

from celery_kit.config.schedules import ScheduleEntry
from celery_kit.config.zoned_cron import ZonedCrontab

__all__ = ["beat_rules", "entry_interval_s"]

#: Cron occurrences examined for the longest gap (a minute cron: 200 min; a monthly: 16 y).
_OCCURRENCES = 200
#: A fixed start, so rendered files do not change from one run to the next.
_FROM = datetime(2026, 1, 1, tzinfo=timezone.utc)
_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def entry_interval_s(entry: ScheduleEntry, *, default_zone: str) -> float:
    """The longest time between two runs of ``entry``: ``every_s``, or for a cron entry the
    longest gap between consecutive occurrences (in its zone, so DST days count)."""
    if entry.every_s is not None:
        return float(entry.every_s)
    fields = dict(zip(_FIELDS, (entry.cron or "").split(), strict=True))
    zone = entry.timezone or default_zone
    cron = ZonedCrontab(**fields, zone=zone, nowfun=lambda: _FROM)
    times: list[float] = []
    at = _FROM
    for _ in range(_OCCURRENCES):
        last, delta, _now = cron.remaining_delta(at)
        at = last + delta
        times.append(at.timestamp())  # epoch seconds: a DST day is 23 or 25 h long
    return max(b - a for a, b in itertools.pairwise(times))


def beat_rules(
    settings: Any, *, rule: Any, prefix: str, window: str, for_s: int
) -> list[dict[str, Any]]:
    """The beat rules (``rule`` builds one, as in ``render.alerts``)."""
    beat = settings.beat
    if not beat.active:
        return []
    rules = []
    for name, entry in sorted(beat.schedule.items()):
        late_s = 2 * entry_interval_s(entry, default_zone=settings.timezone)
        rules.append(
            rule(
                "CeleryBeatEntryLate",
                f'max({prefix}_beat_seconds_since_last_send{{entry="{name}"}}) > {late_s:g}',
                for_s=0,
                severity="warning",
                summary=f"beat entry {name} ({entry.task}) has not been sent for two"
                " intervals (last run {{ $value }} s ago)",
                runbook="Is a beat replica up and leading (celery_beat_leader, kit health"
                " --beat)? Its log says why it does not send (Redis, broker, lease).",
                labels={"entry": name},
            )
        )
    # one leader expected; a dead beat process stops reporting, so none is "0 leaders"
    leaders = f"(sum({prefix}_beat_leader) or vector(0))"
    lease_s = beat.effective_lock_timeout_s + beat.max_loop_interval_s
    rules += [
        rule(
            "CeleryBeatNoLeader",
            f"{leaders} != 1",
            for_s=max(for_s, int(2 * lease_s)),
            severity="critical",
            summary="{{ $value }} beat replicas lead (expected exactly 1): periodic tasks"
            " are not sent",
            runbook="Start a beat replica (celery -A proj kit beat) or read why the running"
            " ones stand by: their logs name the Redis error; a standby takes over within"
            " beat.lock_timeout_s of the leader's death.",
        ),
        rule(
            "CeleryBeatRunsSkipped",
            f"sum by (entry) (increase({prefix}_beat_overlap_skipped_total[{window}])) > 0",
            for_s=0,
            severity="warning",
            summary="beat entry {{ $labels.entry }}: runs skipped because the previous run"
            " still ran",
            runbook="The task runs longer than its interval: make it faster, give the entry a"
            ' longer interval, or set overlap = "allow" if parallel runs are safe.',
        ),
    ]
    return rules
