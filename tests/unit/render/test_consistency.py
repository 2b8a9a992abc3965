"""One config change, every affected artifact changes the same way (one test per value)."""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

from celery_kit.render import render
from tests.integration.support.render import production


def _one(pattern: str, text: str) -> str:
    found = re.search(pattern, text, re.M)
    assert found is not None, pattern
    return found.group(1)


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _env_word(line: str, name: str) -> str | None:
    words = shlex.split(line.split(":", 1)[1])
    return next((w.split("=", 1)[1] for w in words if w.startswith(f"{name}=")), None)


def artifacts(**overrides: Any) -> dict[str, Any]:
    """Every derived value of profile ``bulk``, read back from each rendered file."""
    files = render("all", production(**overrides), app="proj")
    k8s = list(yaml.safe_load_all(files["k8s/celery.yaml"]))
    pod = _named(k8s, "Deployment", "celery-worker-bulk")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    keda = _named(list(yaml.safe_load_all(files["k8s/keda.yaml"])), "ScaledObject",
                  "celery-worker-bulk")  # fmt: skip
    trigger = keda["spec"]["triggers"][0]["metadata"]
    scale_down = keda["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    compose = yaml.safe_load(files["compose/compose.yaml"])["services"]["celery-worker-bulk"]
    unit = files["systemd/celery-worker-bulk.service"]
    procfile = next(line for line in files["Procfile"].splitlines() if line.startswith("bulk:"))
    rules = yaml.safe_load(files["prometheus/celery-kit-rules.yml"])["groups"][0]["rules"]
    hb = "CELERY_KIT_HEALTH__HEARTBEAT_FILE"
    unit_hb = re.search(rf"^Environment={hb}=(\S+)$", unit, re.M)
    return {
        "grace": {
            "k8s": pod["terminationGracePeriodSeconds"],
            "compose": int(compose["stop_grace_period"].rstrip("s")),
            "systemd": int(_one(r"^TimeoutStopSec=(\d+)$", unit)),
            "keda scale-down period": scale_down["scaleDown"]["policies"][0]["periodSeconds"],
        },
        "queues": {
            "k8s": _flag(container["command"], "-Q"),
            "compose": _flag(compose["command"], "-Q"),
            "systemd": _one(r" -Q (\S+) ", unit),
            "keda": _one(r'queue_name=~"([^"]+)"', trigger["query"]).replace("|", ","),
        },
        "no_worker_rules": {
            r["labels"]["queue_name"]: r["annotations"]["summary"]
            for r in rules
            if r["alert"] == "CeleryNoWorkerForQueue"
        },
        "probe": {
            "k8s liveness": container["livenessProbe"]["exec"]["command"],
            "compose": compose["healthcheck"]["test"][1:],
        },
        "heartbeat": {
            "k8s": env.get(hb),
            "compose": compose["environment"].get(hb),
            "systemd": unit_hb.group(1).replace("%%", "%") if unit_hb else None,
            "procfile": _env_word(procfile, hb),
        },
        "per_replica": {
            "k8s -c/autoscale": next(
                a for a in container["command"] if a.startswith("--autoscale=") or a.isdigit()
            ),
            "keda threshold": trigger["threshold"],
        },
    }


def test_longer_time_limit_moves_every_grace_period_in_finish_mode() -> None:
    before = artifacts(deploy={"shutdown": "finish"})["grace"]
    after = artifacts(
        deploy={"shutdown": "finish"}, tasks={"soft_time_limit_s": 1140, "time_limit_s": 1200}
    )["grace"]
    assert set(before.values()) == {615}  # 600 s hard limit + 15 s margin, everywhere
    assert set(after.values()) == {1215}


def test_longer_soft_shutdown_moves_every_grace_period_in_requeue_mode() -> None:
    before = artifacts()["grace"]
    after = artifacts(workers={"bulk": {"soft_shutdown_timeout_s": 120}})["grace"]
    assert set(before.values()) == {75}
    assert set(after.values()) == {135}


def test_new_queue_reaches_worker_flags_scaler_and_alerts() -> None:
    before = artifacts()
    after = artifacts(queues={"reports": {}}, workers={"bulk": {"queues": ["bulk", "reports"]}})
    assert set(before["queues"].values()) == {"bulk"}
    assert set(after["queues"].values()) == {"bulk,reports"}
    assert "reports" not in before["no_worker_rules"]
    assert after["no_worker_rules"]["reports"] == (
        "no live worker consumes queue reports (profiles: bulk)"
    )


def test_heartbeat_file_reaches_every_worker_and_probe() -> None:
    before = artifacts()
    after = artifacts(health={"heartbeat_file": "/var/run/hb/%n.json"})
    assert set(before["heartbeat"].values()) == {"/tmp/celery-kit-%n.heartbeat.json"}
    assert set(after["heartbeat"].values()) == {"/var/run/hb/%n.json"}
    # the probes read the same variable: one command everywhere
    assert after["probe"]["k8s liveness"] == after["probe"]["compose"]


def test_concurrency_sets_the_pool_and_the_scaler_target() -> None:
    before = artifacts()["per_replica"]
    after = artifacts(workers={"bulk": {"autoscale": {"max": 16, "min": 2}}})["per_replica"]
    assert before == {"k8s -c/autoscale": "--autoscale=8,2", "keda threshold": "8"}
    assert after == {"k8s -c/autoscale": "--autoscale=16,2", "keda threshold": "16"}


def test_new_profile_appears_in_every_artifact() -> None:
    files = render(
        "all",
        production(queues={"mail": {}}, workers={"mail": {"queues": ["mail"], "concurrency": 2}}),
        app="proj",
    )
    assert "name: celery-worker-mail" in files["k8s/celery.yaml"]
    assert "name: celery-worker-mail" in files["k8s/keda.yaml"]
    assert "celery-worker-mail:" in files["compose/compose.yaml"]
    assert "systemd/celery-worker-mail.service" in files
    assert "\nmail: " in files["Procfile"]
    assert "mail@.*" in files["grafana/celery-kit-dashboard.json"]
