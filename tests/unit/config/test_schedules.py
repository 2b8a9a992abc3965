"""``[beat]`` settings: every bad input is a ConfigError naming the entry and the fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.schedules import crontab

from celery_kit import ConfigError, Settings
from celery_kit.config.schedules import ENTRY_HEADER, OVERLAP_HEADER, celery_beat_schedule

REDIS = "redis://127.0.0.1:6399/0"


def _settings(schedule: dict[str, Any], **beat: Any) -> Settings:
    return Settings(_environ={}, broker_url=REDIS, beat={"schedule": schedule, **beat})


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"task": "t.x", "cron": "61 * * * *"}, r"beat\.schedule\.nightly\.cron.*minute \(0-59\)"),
        ({"task": "t.x", "cron": "* * *"}, r"has 3 field\(s\); write five"),
        ({"task": "t.x", "every_s": 0.5}, r"beat\.schedule\.nightly\.every_s.*every_s >= 1"),
        ({"task": "t.x", "every_s": 5, "queue": "nope"}, r"beat\.schedule\.nightly: queue 'nope'"),
        (
            {"task": "t.x", "every_s": 5, "cronn": "x"},
            r"`beat\.schedule\.nightly\.cronn`.*did you mean `beat\.schedule\.nightly\.cron`",
        ),
        ({"task": "t.x", "every_s": 5, "cron": "* * * * *"}, r"both `cron` and `every_s`"),
        ({"task": "t.x"}, r"beat\.schedule\.nightly.*neither `cron` nor `every_s`"),
        ({"task": "t.x", "every_s": 5, "overlap": "never"}, r"overlap.*'skip' or 'allow'"),
        ({"task": "t.x", "every_s": 5, "priority": 12}, r"priority must be 0-9"),
        ({"task": "", "every_s": 5}, r"beat\.schedule\.nightly\.task"),
    ],
)
def test_bad_entries_are_refused_with_the_entry_and_the_fix(
    entry: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        _settings({"nightly": entry})


def test_bad_entry_name_and_inconsistent_timing_are_refused() -> None:
    with pytest.raises(ConfigError, match="entry name 'a b'"):
        _settings({"a b": {"task": "t.x", "every_s": 5}})
    with pytest.raises(ConfigError, match=r"lock_timeout_s \(3\) must be at least twice"):
        _settings({}, max_loop_interval_s=2, lock_timeout_s=3)


def test_beat_without_any_redis_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"set redis\.url"):
        Settings(
            _environ={},
            broker_url="amqp://guest:guest@127.0.0.1:5672//",
            beat={"schedule": {"a": {"task": "t.x", "every_s": 5}}},
        )


def test_toml_entries_load_and_an_unknown_key_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[beat.schedule.cleanup]\ntask = "p.cleanup"\ncron = "0 */6 * * *"\n')
    settings = Settings(_config=path, _environ={}, broker_url=REDIS)
    assert settings.beat.schedule["cleanup"].cron == "0 */6 * * *"
    path.write_text('[beat.schedule.cleanup]\ntask = "p.cleanup"\nevery_s = 60\ntimezon = "x"\n')
    with pytest.raises(ConfigError, match=r"beat\.schedule\.cleanup\.timezon.*c\.toml"):
        Settings(_config=path, _environ={}, broker_url=REDIS)


def test_entries_become_celerys_beat_schedule_with_the_kit_headers() -> None:
    settings = _settings(
        {
            "often": {"task": "t.x", "every_s": 30, "args": [1], "overlap": "allow"},
            "nightly": {
                "task": "t.y",
                "cron": "0 3 * * *",
                "queue": "low",
                "priority": "high",
                "expires_s": 600,
            },
        }
    )
    schedule = celery_beat_schedule(settings)
    assert schedule["often"]["schedule"] == timedelta(seconds=30)
    assert schedule["often"]["args"] == [1]
    assert schedule["often"]["options"] == {
        "headers": {ENTRY_HEADER: "often", OVERLAP_HEADER: "allow"}
    }
    nightly = schedule["nightly"]
    assert isinstance(nightly["schedule"], crontab)
    assert nightly["schedule"].hour == {3}
    assert nightly["options"]["queue"] == "low"
    assert nightly["options"]["priority"] == 7  # kit scale; translated when published
    assert nightly["options"]["expires"] == 600
    assert nightly["options"]["headers"][OVERLAP_HEADER] == "skip"  # the default


def test_conf_configures_redbeat_namespaced_and_derived() -> None:
    conf = _settings({"a": {"task": "t.x", "every_s": 5}}, max_loop_interval_s=2).celery_conf()
    assert conf["beat_scheduler"] == "celery_kit.beat.scheduler:KitScheduler"
    assert conf["beat_max_loop_interval"] == 2
    assert conf["redbeat_redis_url"] == REDIS
    assert conf["redbeat_key_prefix"] == "celery_kit:beat:"
    assert conf["redbeat_lock_key"] == "celery_kit:beat::lock"
    assert conf["redbeat_lock_timeout"] == 10  # 5 x the loop
    assert set(conf["beat_schedule"]) == {"a"}


def test_no_schedule_leaves_celerys_beat_alone() -> None:
    conf = Settings(_environ={}, broker_url=REDIS).celery_conf()
    assert not {k for k in conf if k.startswith(("beat_", "redbeat_"))}
    conf = _settings({}, enabled=True).celery_conf()
    assert conf["beat_scheduler"].endswith("KitScheduler")


def test_a_cron_entry_can_have_its_own_time_zone() -> None:
    from datetime import datetime, timezone

    from celery_kit import make_app
    from celery_kit.config.zoned_cron import ZonedCrontab

    settings = _settings({"tokyo": {"task": "t.x", "cron": "0 9 * * *", "timezone": "Asia/Tokyo"}})
    sched = celery_beat_schedule(settings)["tokyo"]["schedule"]
    assert isinstance(sched, ZonedCrontab)
    sched.app = make_app("t", settings=settings)  # the app's timezone is UTC
    # last run at 09:00 Tokyo (00:00 UTC): the next is 09:00 Tokyo the next day, not 09:00 UTC
    last = datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc)
    last_local, delta, _ = sched.remaining_delta(last)
    assert (last_local + delta).astimezone(timezone.utc) == datetime(
        2026, 1, 2, 0, 0, tzinfo=timezone.utc
    )


def test_time_zone_mistakes_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown time zone 'Mars/Base'"):
        _settings({"a": {"task": "t.x", "cron": "0 9 * * *", "timezone": "Mars/Base"}})
    with pytest.raises(ConfigError, match=r"timezone applies to cron entries only"):
        _settings({"a": {"task": "t.x", "every_s": 60, "timezone": "Asia/Tokyo"}})
