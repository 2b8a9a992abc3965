"""Beat alert rules: rendered only with beat on, thresholds from each entry's interval,
`promtool check rules` and hand-written `promtool test rules` scenarios."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from celery_kit.config.schedules import ScheduleEntry
from celery_kit.render import render, write
from celery_kit.render.beat_alerts import entry_interval_s
from tests.integration.support.render import production, require_binary

HERE = Path(__file__).parent
SCHEDULE = {
    "sync_prices": {"task": "proj.sync", "every_s": 60},
    "nightly": {"task": "proj.cleanup", "cron": "0 3 * * *", "timezone": "Europe/Paris"},
}


def _rules(**overrides: Any) -> list[dict[str, Any]]:
    text = render("alerts", production(**overrides), app="proj")
    return list(yaml.safe_load(text["prometheus/celery-kit-rules.yml"])["groups"][0]["rules"])


def test_no_beat_rules_without_beat() -> None:
    assert not [r for r in _rules() if r["alert"].startswith("CeleryBeat")]


def test_one_late_rule_per_entry_at_twice_its_interval() -> None:
    rules = {
        (r["alert"], r["labels"].get("entry")): r
        for r in _rules(beat={"schedule": SCHEDULE})
        if r["alert"].startswith("CeleryBeat")
    }
    assert set(rules) == {
        ("CeleryBeatEntryLate", "sync_prices"),
        ("CeleryBeatEntryLate", "nightly"),
        ("CeleryBeatNoLeader", None),
        ("CeleryBeatRunsSkipped", None),
    }
    assert rules["CeleryBeatEntryLate", "sync_prices"]["expr"].endswith("> 120")
    assert rules["CeleryBeatEntryLate", "nightly"]["expr"].endswith("> 172800")


def test_cron_intervals_are_the_longest_gap_between_runs() -> None:
    def gap(cron: str, zone: str | None = None) -> float:
        return entry_interval_s(
            ScheduleEntry(task="t", cron=cron, timezone=zone), default_zone="UTC"
        )

    assert gap("*/5 * * * *") == 300
    assert gap("0 9 * * 1") == 7 * 86400
    assert gap("0 0 1 * *") == 31 * 86400
    assert gap("0 9,17 * * *") == 16 * 3600  # 17:00 -> 09:00
    assert gap("0 12 * * *", "Europe/Paris") == 86400  # spring-forward day is shorter


def test_promtool_accepts_and_tests_the_beat_rules(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    write(render("alerts", production(beat={"schedule": SCHEDULE}), app="proj"), tmp_path)
    directory = tmp_path / "prometheus"
    rules = directory / "celery-kit-rules.yml"
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.copy(HERE / "beat_alerts_test.yml", directory / "beat_alerts_test.yml")
    done = subprocess.run(
        [promtool, "test", "rules", str(directory / "beat_alerts_test.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
