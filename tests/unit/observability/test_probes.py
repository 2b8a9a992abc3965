"""Probes and the heartbeat decision without sockets: synthetic heartbeats, pure checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from celery_kit import ConfigError, Settings
from celery_kit.cli import main
from celery_kit.observability.heartbeat import assess
from celery_kit.observability.heartbeat_file import expand_heartbeat_path
from celery_kit.observability.probes import check_liveness, check_readiness, probe
from celery_kit.observability.probes import main as probe_main
from celery_kit.observability.report import report_problems

NOW = 1_000_000.0


def beat(**fields: Any) -> dict[str, Any]:
    base = {
        "version": 1,
        "hostname": "w1@host",
        "written_at": NOW - 1,
        "consuming_at": NOW - 1,
        "broker_ok_at": NOW - 1,
        "ready": True,
        "reason": "",
        "max_age_s": 60.0,
        "interval_s": 5.0,
        "broker_address": None,
    }
    return {**base, **fields}


def test_liveness_passes_with_a_recent_proof_and_fails_after_the_age() -> None:
    assert check_liveness(beat(), now=NOW).ok
    stale = check_liveness(beat(consuming_at=NOW - 61, reason="not consuming: 3 wait"), now=NOW)
    assert not stale.ok
    assert "not consuming: 3 wait" in stale.message
    assert check_liveness(beat(consuming_at=NOW - 61), now=NOW, max_age_s=120).ok


def test_liveness_names_a_frozen_worker() -> None:
    frozen = check_liveness(beat(written_at=NOW - 90, consuming_at=NOW - 90), now=NOW)
    assert not frozen.ok
    assert "not written for 90 s" in frozen.message


def test_readiness_needs_a_running_consumer_and_a_recent_broker_answer() -> None:
    assert check_readiness(beat(), now=NOW, connect=False).ok
    assert not check_readiness(beat(ready=False, reason="reconnecting"), now=NOW).ok
    assert "no broker round trip" in check_readiness(beat(broker_ok_at=None), now=NOW).message
    assert "NOT ready" in check_readiness(beat(consuming_at=NOW - 61), now=NOW).message


def test_probe_reads_every_file_matching_a_node_template(tmp_path: Path) -> None:
    template = str(tmp_path / "hb-%n.json")
    assert expand_heartbeat_path(template, "w1@host").endswith("hb-w1.json")
    (tmp_path / "hb-w1.json").write_text(json.dumps(beat()))
    assert probe("liveness", file=template, now=NOW).ok
    (tmp_path / "hb-w2.json").write_text(json.dumps(beat(hostname="w2@h", consuming_at=0)))
    both = probe("liveness", file=template, now=NOW)
    assert not both.ok
    assert "w1@host" in both.message
    assert "w2@h" in both.message


def test_probe_without_a_heartbeat_fails_and_says_why(tmp_path: Path) -> None:
    result = probe("readiness", file=str(tmp_path / "none.json"))
    assert not result.ok
    assert "no heartbeat" in result.message


def test_stand_alone_probe_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    path = tmp_path / "hb.json"
    path.write_text(json.dumps(beat(written_at=time.time(), consuming_at=time.time())))
    assert probe_main(["--liveness", "--file", str(path)]) == 0
    path.write_text(json.dumps(beat(written_at=time.time(), consuming_at=time.time() - 100)))
    assert probe_main(["--liveness", "--file", str(path)]) == 1
    assert probe_main(["--liveness", "--file", str(path), "--max-age", "200"]) == 0
    assert "NOT live" in capsys.readouterr().out


def test_celery_kit_health_probe_needs_no_app(tmp_path: Path) -> None:
    import time

    path = tmp_path / "hb.json"
    path.write_text(json.dumps(beat(written_at=time.time(), consuming_at=time.time())))
    result = CliRunner().invoke(main, ["health", "--liveness", "--file", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("live:")
    result = CliRunner().invoke(main, ["health", "--readiness", "--file", str(tmp_path / "x")])
    assert result.exit_code == 1


def test_the_stand_alone_probe_imports_neither_celery_nor_the_app(tmp_path: Path) -> None:
    code = (
        "import sys; from celery_kit.health import main; main(['--liveness', '--file', 'x']);"
        "print(sorted(m for m in ('celery', 'kombu', 'pydantic', 'redis') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr


# -- the heartbeat's decision --------------------------------------------------------------


def _waiting(**depths: int) -> Any:
    return lambda: depths


def _unreachable() -> dict[str, int]:
    raise ConnectionError("refused")


def decide(**kwargs: Any) -> Any:
    args = {
        "running": True,
        "connected": True,
        "received": False,
        "waiting": _waiting(),
        "reserved": 0,
        "limit": 2,
        "interval_s": 5.0,
    }
    return assess(**{**args, **kwargs})


def test_an_idle_worker_with_empty_queues_proves_it_is_live() -> None:
    verdict = decide()
    assert (verdict.ready, verdict.proof, verdict.broker_ok, verdict.stuck) == (
        True,
        True,
        True,
        False,
    )


def test_a_message_received_is_proof_without_asking_the_broker() -> None:
    assert decide(received=True, waiting=_unreachable).proof


def test_waiting_work_with_free_slots_and_nothing_received_is_the_ghost_symptom() -> None:
    verdict = decide(waiting=_waiting(default=3, low=0), reserved=1)
    assert verdict.ready
    assert not verdict.proof
    assert verdict.stuck
    assert verdict.reason.startswith("not consuming: 3 message(s) wait in default")


def test_a_busy_worker_is_not_expected_to_take_more() -> None:
    verdict = decide(waiting=_waiting(default=50), reserved=2, limit=2)
    assert verdict.proof
    assert not verdict.stuck


def test_no_connection_or_no_broker_answer_is_no_proof() -> None:
    assert not decide(running=False).ready
    assert not decide(connected=False).proof
    verdict = decide(waiting=_unreachable)
    assert not verdict.proof
    assert not verdict.broker_ok
    assert "broker round trip failed" in verdict.reason


def test_deployment_report_problems() -> None:
    report = {
        "broker_ok": True,
        "workers": {},
        "queues": {"default": {"messages": 3, "oldest_age_s": 700.0}},
    }
    assert report_problems(report) == ["0 worker(s) seen, expected at least 1"]
    report["workers"] = {"w@h": {}}
    assert report_problems(report, max_oldest_age_s=600) == [
        "queue default: oldest message waits 700 s"
    ]


def test_bad_health_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="twice"):
        Settings(_environ={}, health={"interval_s": 10, "max_age_s": 15})
    with pytest.raises(ConfigError, match="broker_timeout_s"):
        Settings(_environ={}, health={"interval_s": 1, "broker_timeout_s": 1})


def test_default_heartbeat_is_scoped_by_app_and_node() -> None:
    from celery_kit.observability.heartbeat_file import default_heartbeat_file

    path = expand_heartbeat_path(default_heartbeat_file(), "w1@host", "proj.app")
    assert path.endswith("celery-kit-proj.app-w1.heartbeat.json")


def test_probe_checks_only_the_worker_it_is_asked_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from celery_kit.observability.heartbeat_file import default_heartbeat_file

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    template = default_heartbeat_file()

    def write(app: str, host: str, **fields: object) -> None:
        path = Path(expand_heartbeat_path(template, host, app))
        path.write_text(json.dumps(beat(hostname=host, **fields)))

    # Given a healthy worker of ours, and a dead worker of another project on the same host
    write("ours", "w1@h")
    write("theirs", "w1@h", consuming_at=0)
    # Then the probe asked about our worker passes, whatever the other project's state
    assert probe("liveness", app_name="ours", now=NOW).ok
    assert probe("liveness", app_name="ours", node="w1", now=NOW).ok
    assert not probe("liveness", app_name="theirs", now=NOW).ok
    # And without saying which worker, it refuses to guess instead of mixing them
    unnamed = probe("liveness", now=NOW)
    assert not unnamed.ok
    assert "2 workers' heartbeats match" in unnamed.message
    # A second worker of ours: the node picks one
    write("ours", "w2@h", consuming_at=0)
    assert probe("liveness", app_name="ours", node="w1@h", now=NOW).ok
    assert not probe("liveness", app_name="ours", node="w2", now=NOW).ok
    assert probe_main(["--liveness", "--app-name", "theirs", "--node", "nosuch"]) == 1
