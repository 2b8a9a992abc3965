"""Slots, due times, the reconciliation diff and the overlap header check (no sockets)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from celery.schedules import crontab

from celery_kit import Settings, make_app
from celery_kit.beat.entry import KitEntry, slot_of
from celery_kit.beat.reconcile import Diff
from celery_kit.config.schedules import ENTRY_HEADER, OVERLAP_HEADER
from celery_kit.tasks.overlap import lock_name, wants_guard

REDIS = "redis://127.0.0.1:6399/0"


@pytest.fixture
def app() -> Any:
    schedule = {"a": {"task": "t.x", "every_s": 2}}
    return make_app(
        "t", settings=Settings(_environ={}, broker_url=REDIS, beat={"schedule": schedule})
    )


def _entry(app: Any, schedule: Any, last_run_at: float | None) -> KitEntry:
    last = datetime.fromtimestamp(last_run_at, tz=timezone.utc) if last_run_at else None
    entry = KitEntry(name="a", task="t.x", schedule=schedule, app=app)
    entry.last_run_at = last
    return entry


def test_interval_slots_are_multiples_of_the_interval_and_cron_slots_minutes() -> None:
    from celery.schedules import schedule

    assert slot_of(schedule(timedelta(seconds=2)), 101.9) == 100.0
    assert slot_of(schedule(timedelta(seconds=300)), 1000.0) == 900.0
    assert slot_of(crontab(minute="*/5"), 1000.0) == 960.0


def _sched(every: float) -> Any:
    from celery.schedules import schedule

    return schedule(timedelta(seconds=every))


def test_an_entry_is_due_at_the_next_boundary_and_then_waits_for_the_following(app: Any) -> None:
    slot = slot_of(_sched(2), time.time())
    due, next_s = _entry(app, timedelta(seconds=2), slot).is_due()
    assert not due
    assert 0 < next_s <= 2.0
    due, next_s = _entry(app, timedelta(seconds=2), slot - 2).is_due()
    assert due
    assert 0 < next_s <= 2.0  # the next boundary, not a full interval after "now"


def test_after_downtime_an_entry_is_due_once(app: Any) -> None:
    # last ran 10 intervals ago: due now, and due again only at the next boundary, so the
    # missed slots are not sent one by one
    stale = _entry(app, timedelta(seconds=2), slot_of(_sched(2), time.time()) - 20)
    due, next_s = stale.is_due()
    assert due
    assert next_s <= 2.0


def test_never_run_entry_is_due(app: Any) -> None:
    assert _entry(app, timedelta(seconds=60), None).is_due()[0]


def test_diff_describes_every_change() -> None:
    diff = Diff(added=["b"], changed={"c": "schedule"}, removed=["d"], unchanged=["a"])
    assert diff.describe() == "added [b], changed [c: schedule], removed [d], 1 unchanged"
    assert Diff(unchanged=["a", "b"]).describe() == "2 unchanged"


@pytest.mark.parametrize(
    ("headers", "guarded"),
    [
        ({ENTRY_HEADER: "a", OVERLAP_HEADER: "skip"}, True),
        ({ENTRY_HEADER: "a", OVERLAP_HEADER: "allow"}, False),
        ({OVERLAP_HEADER: "skip"}, False),
        ({"kit_published_at": 1.0}, False),
        (None, False),
    ],
)
def test_only_beat_runs_of_skip_entries_are_guarded(headers: Any, guarded: bool) -> None:
    assert wants_guard(headers) is guarded


def test_the_overlap_lock_is_namespaced_per_entry() -> None:
    assert lock_name("cleanup") == "beat:cleanup"


def test_zoned_cron_entries_keep_their_zone_through_redbeats_json(app: Any) -> None:
    from celery_kit.beat.codec import decode_definition, encode_definition
    from celery_kit.config.schedules import parse_cron
    from celery_kit.config.zoned_cron import ZonedCrontab

    entry = KitEntry(
        name="a", task="t.x", schedule=parse_cron("0 9 * * 1", zone="Asia/Tokyo"), app=app
    )
    back = decode_definition(encode_definition(entry))["schedule"]
    assert isinstance(back, ZonedCrontab)
    assert back.zone == "Asia/Tokyo"
    assert back == entry.schedule
    assert back != crontab(minute="0", hour="9", day_of_week="1")  # the zone matters
    plain = KitEntry(name="b", task="t.x", schedule=crontab(minute="*/5"), app=app)
    assert type(decode_definition(encode_definition(plain))["schedule"]) is crontab
