"""Alert rules: `promtool check rules`, and hand-written `promtool test rules` scenarios."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from celery_kit.render import render, write
from tests.integration.support.render import production, require_binary

HERE = Path(__file__).parent


def rules_dir(tmp_path: Path, **overrides: object) -> Path:
    write(render("alerts", production(**overrides), app="proj"), tmp_path)
    return tmp_path / "prometheus"


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    rules = rules_dir(tmp_path) / "celery-kit-rules.yml"
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    # the check above can fail: a rule with a PromQL syntax error is refused
    promtool = require_binary("promtool")
    rules = rules_dir(tmp_path) / "celery-kit-rules.yml"
    data = yaml.safe_load(rules.read_text())
    data["groups"][0]["rules"][0]["expr"] = "sum by (queue_name (celery_queue_length)"
    rules.write_text(yaml.safe_dump(data))
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode != 0


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    directory = rules_dir(tmp_path)
    shutil.copy(HERE / "alerts_test.yml", directory / "alerts_test.yml")
    done = subprocess.run(
        [promtool, "test", "rules", str(directory / "alerts_test.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_runbook_and_uses_the_metric_prefix() -> None:
    text = render("alerts", production(metrics={"prefix": "myapp"}), app="proj")
    rules = yaml.safe_load(text["prometheus/celery-kit-rules.yml"])["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert names == {
        "CeleryQueueBacklog", "CeleryQueueOldestMessage", "CeleryNoWorkerForQueue",
        "CeleryTaskFailureRatio", "CeleryDeadLetterQueueGrowing", "CeleryPoisonMessage",
        "CeleryQueueLatencyHigh", "CeleryWorkersLost", "CeleryPoolProcessLost",
        "CeleryDelayedTasksLate",
    }  # fmt: skip
    for rule in rules:
        assert rule["annotations"]["runbook"]
        assert "celery_" not in rule["expr"]
        assert "myapp_" in rule["expr"]


def test_thresholds_and_durations_come_from_deploy_alerts() -> None:
    settings = production(deploy={"alerts": {"for_s": 7, "window_s": 20, "backlog_messages": 3}})
    text = render("alerts", settings, app="proj")["prometheus/celery-kit-rules.yml"]
    group = yaml.safe_load(text)["groups"][0]
    backlog = next(r for r in group["rules"] if r["alert"] == "CeleryQueueBacklog")
    assert backlog["for"] == "7s"
    assert "> 3 and" in backlog["expr"]
    assert "[20s]" in backlog["expr"]


def _alert_names(**overrides: object) -> set[str]:
    text = render("alerts", production(**overrides), app="proj")["prometheus/celery-kit-rules.yml"]
    return {r["alert"] for r in yaml.safe_load(text)["groups"][0]["rules"]}


def test_the_delay_lag_rule_needs_a_mover_that_workers_run_and_serve() -> None:
    assert "CeleryDelayedTasksLate" in _alert_names()
    # no delay set (delays off, kombu's transport, RabbitMQ): no lag to watch
    assert "CeleryDelayedTasksLate" not in _alert_names(delays={"enabled": False})
    assert "CeleryDelayedTasksLate" not in _alert_names(broker={"transport": "kombu"})
    # a separate `kit mover` serves no metrics: a rule there would never see data
    assert "CeleryDelayedTasksLate" not in _alert_names(delays={"mover_in_worker": False})


def test_the_delay_lag_threshold_comes_from_deploy_alerts() -> None:
    settings = production(deploy={"alerts": {"delay_lag_p95_s": 12.5, "window_s": 60}})
    text = render("alerts", settings, app="proj")["prometheus/celery-kit-rules.yml"]
    rule = next(
        r
        for r in yaml.safe_load(text)["groups"][0]["rules"]
        if r["alert"] == "CeleryDelayedTasksLate"
    )
    assert rule["expr"] == (
        "histogram_quantile(0.95, sum by (le) (rate(celery_delay_lag_seconds_bucket[60s]))) > 12.5"
    )
