"""Beat heartbeat (read by the kit's probes), beat metrics, and the `kit beat` command."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from celery_kit import Settings, make_app
from celery_kit.cli import kit, main
from celery_kit.observability.beat import BeatMetrics, BeatPulse
from celery_kit.observability.probes import probe

REDIS = "redis://127.0.0.1:6399/0"


def _settings(tmp_path: Path, **beat: Any) -> Settings:
    return Settings(
        _environ={},
        broker_url=REDIS,
        metrics={"enabled": True},
        beat={"heartbeat_file": str(tmp_path / "beat.json"), "max_age_s": 10, **beat},
    )


def test_the_beat_heartbeat_passes_the_liveness_probe_until_it_is_stale(tmp_path: Path) -> None:
    pulse = BeatPulse(_settings(tmp_path))
    pulse.write(leader=True, reason="leader")
    beat = json.loads((tmp_path / "beat.json").read_text())
    assert beat["role"] == "beat"
    assert beat["leader"] is True
    assert probe("liveness", file=str(tmp_path / "beat.json")).ok
    later = time.time() + 11
    result = probe("liveness", file=str(tmp_path / "beat.json"), now=later)
    assert not result.ok
    assert "beat@" in result.message
    pulse.remove()
    assert not (tmp_path / "beat.json").exists()


def test_kit_health_beat_probes_the_beat_file(tmp_path: Path) -> None:
    BeatPulse(_settings(tmp_path)).write(leader=False, reason="standby")
    runner = CliRunner()
    ok = runner.invoke(main, ["health", "--beat", "--file", str(tmp_path / "beat.json")])
    assert ok.exit_code == 0, ok.output
    missing = runner.invoke(main, ["health", "--beat", "--file", str(tmp_path / "none.json")])
    assert missing.exit_code == 1
    assert "no heartbeat" in missing.output


def test_beat_metrics_count_sends_leadership_and_age_since_last_send(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    last = time.time() - 42
    metrics = BeatMetrics(
        _settings(tmp_path),
        last_runs=lambda: {"a": ("t.x", last), "b": ("t.y", None)},
        registry=registry,
    )
    metrics.sent_one("a", "t.x")
    metrics.sent_one("a", "t.x")
    metrics.set_leader(True)
    assert (
        registry.get_sample_value("celery_beat_runs_sent_total", {"entry": "a", "name": "t.x"}) == 2
    )
    age = registry.get_sample_value(
        "celery_beat_seconds_since_last_send", {"entry": "a", "name": "t.x"}
    )
    assert age is not None
    assert 41 < age < 60
    assert (
        registry.get_sample_value(
            "celery_beat_seconds_since_last_send", {"entry": "b", "name": "t.y"}
        )
        is None
    )
    leader = [s for m in registry.collect() for s in m.samples if s.name == "celery_beat_leader"]
    assert [s.value for s in leader] == [1.0]


def test_beat_metrics_report_nothing_rather_than_stale_ages_when_redis_is_away(
    tmp_path: Path,
) -> None:
    def away() -> dict[str, Any]:
        raise ConnectionError("refused")

    registry = CollectorRegistry()
    BeatMetrics(_settings(tmp_path), last_runs=away, registry=registry)
    samples = [s for m in registry.collect() for s in m.samples]
    assert not [s for s in samples if s.name == "celery_beat_seconds_since_last_send"]


@pytest.fixture
def beat_app(tmp_path: Path) -> Any:
    app = make_app("t", settings=_settings(tmp_path, schedule={"a": {"task": "t.x", "every_s": 5}}))

    @app.task(name="t.x")
    def x() -> None:
        return None

    return app


def test_kit_beat_dry_run_prints_the_beat_command(
    beat_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    module = importlib.import_module("celery_kit.cli.beat")  # the name `beat` is the command
    monkeypatch.setattr(module, "app_ref", lambda ctx: "proj")
    result = CliRunner().invoke(
        kit, ["beat", "--dry-run", "-l", "INFO"], obj=SimpleNamespace(app=beat_app)
    )
    assert result.exit_code == 0, result.output
    assert "-m celery -A proj beat --scheduler celery_kit.beat.scheduler:KitScheduler -l INFO" in (
        result.output
    )


def test_kit_beat_refuses_an_unregistered_task_and_an_unconfigured_beat(tmp_path: Path) -> None:
    typo = make_app(
        "t", settings=_settings(tmp_path, schedule={"a": {"task": "t.typo", "every_s": 5}})
    )
    result = CliRunner().invoke(kit, ["beat", "--dry-run"], obj=SimpleNamespace(app=typo))
    assert result.exit_code == 1
    assert "[beat.schedule.a]: task 't.typo' is not registered" in result.output
    none = make_app("t", settings=Settings(_environ={}, broker_url=REDIS))
    result = CliRunner().invoke(kit, ["beat", "--dry-run"], obj=SimpleNamespace(app=none))
    assert result.exit_code == 1
    assert "declare entries as [beat.schedule.NAME]" in result.output


def test_worker_start_up_checks_refuse_an_unregistered_beat_task(tmp_path: Path) -> None:
    from celery_kit.beat.checks import unregistered_entries
    from celery_kit.build import run_startup_checks
    from celery_kit.exceptions import ConfigError

    app = make_app(
        "t", settings=_settings(tmp_path, schedule={"a": {"task": "t.typo", "every_s": 5}})
    )
    assert len(unregistered_entries(app)) == 1
    with pytest.raises(ConfigError, match=r"t\.typo"):
        run_startup_checks(app)


def test_kit_check_and_doctor_report_an_unregistered_beat_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    (tmp_path / "beatproj.py").write_text(
        "from celery_kit import make_app\n"
        "from celery_kit.config.settings import Settings\n"
        "schedule = {'nightly': {'task': 'beatproj.typo', 'cron': '0 3 * * *'}}\n"
        "app = make_app('beatproj', settings=Settings(_environ={}, broker_url='redis://h:1/0',"
        " beat={'schedule': schedule}))\n"
        "@app.task(name='beatproj.real', shared=False)\n"
        "def real(): ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        result = CliRunner().invoke(main, ["-A", "beatproj", "check"])
        assert result.exit_code == 1, result.output
        assert "[beat.schedule.nightly]: task 'beatproj.typo' is not registered" in result.output
        assert "beat-task-not-registered" in result.output
    finally:
        sys.modules.pop("beatproj", None)
