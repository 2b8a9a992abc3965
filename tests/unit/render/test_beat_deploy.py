"""Beat in every artifact when the config has a schedule: validated like the workers."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import compose_spec
import kubernetes_validate
import yaml

from celery_kit.render import render, write
from tests.integration.support.render import production, require_binary

K8S_VERSION = kubernetes_validate.latest_version()
SCHEDULE = {"schedule": {"cleanup": {"task": "proj.tasks.cleanup", "cron": "0 */6 * * *"}}}


def files(**overrides: Any) -> dict[str, str]:
    return render("all", production(**{"beat": SCHEDULE, **overrides}), app="proj")


def k8s(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text)}


def test_no_schedule_renders_no_beat() -> None:
    plain = render("all", production(), app="proj")
    assert not any("beat" in name for name in plain)
    assert "kit beat" not in "".join(plain.values())


def test_beat_objects_validate_against_the_kubernetes_schema() -> None:
    objs = k8s(files()["k8s/celery.yaml"])
    for key in (("Deployment", "celery-beat"), ("Service", "celery-beat")):
        kubernetes_validate.validate(objs[key], K8S_VERSION, strict=True)


def test_beat_deployment_runs_kit_beat_with_a_probe_on_its_own_heartbeat() -> None:
    objs = k8s(files()["k8s/celery.yaml"])
    deployment = objs[("Deployment", "celery-beat")]
    assert deployment["spec"]["replicas"] == 1  # the leader lease makes a second one idle
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["celery", "-A", "proj", "kit", "beat"]
    env = {e["name"]: e["value"] for e in container["env"]}
    beat_file = env["CELERY_KIT_BEAT__HEARTBEAT_FILE"]
    probe = ["python", "-m", "celery_kit.health", "--liveness", "--file", beat_file]
    assert container["livenessProbe"]["exec"]["command"] == probe
    assert container["startupProbe"]["exec"]["command"] == probe
    assert "readinessProbe" not in container  # beat serves no traffic
    assert "PROMETHEUS_MULTIPROC_DIR" not in env  # one process: no multiprocess directory
    # its own metrics port (beat.metrics_port), scraped through the ServiceMonitor
    assert container["ports"] == [{"name": "metrics", "containerPort": 9809, "protocol": "TCP"}]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9809"
    service = objs[("Service", "celery-beat")]
    monitor = objs[("ServiceMonitor", "celery-metrics")]["spec"]["selector"]["matchLabels"]
    assert monitor.items() <= service["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["port"] == 9809
    # a configured heartbeat file is what both the beat and its probe use
    objs = k8s(files(beat={**SCHEDULE, "heartbeat_file": "/run/b.json"})["k8s/celery.yaml"])
    (container,) = objs[("Deployment", "celery-beat")]["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["exec"]["command"][-1] == "/run/b.json"
    assert container["env"][0] == {
        "name": "CELERY_KIT_BEAT__HEARTBEAT_FILE",
        "value": "/run/b.json",
    }


def test_worker_metrics_annotations_keep_the_workers_port() -> None:
    objs = k8s(files()["k8s/celery.yaml"])
    pod = objs[("Deployment", "celery-worker-critical")]["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9808"


def test_systemd_analyze_verifies_the_beat_unit(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze", required_in_ci=False)
    celery = str(Path(sys.executable).parent / "celery")
    deploy = {"celery_bin": celery, "working_directory": str(tmp_path), "systemd_user": "root"}
    settings = production(beat=SCHEDULE, deploy=deploy)
    paths = write(render("systemd", settings, app="proj"), tmp_path)
    beat = tmp_path / "systemd" / "celery-beat.service"
    assert beat in paths
    done = subprocess.run(
        [analyze, "verify", str(beat)], capture_output=True, text=True, cwd=tmp_path
    )
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "celery-" in line]
    assert ours == [], done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    text = beat.read_text()
    assert f"ExecStart={celery} -A proj kit beat\n" in text
    assert "KillMode=mixed\n" in text  # SIGTERM to beat: it releases the lease


def test_one_host_gives_beat_its_own_metrics_port_in_units_and_procfile() -> None:
    out = files()
    ports = {}
    for name, text in out.items():
        found = re.search(r"(?:METRICS__PORT=|METRICS_PORT=|--port )(\d+)", text)
        if name.startswith("systemd/") and found:
            ports[name] = found.group(1)
    assert ports["systemd/celery-beat.service"] == "9812"  # after 3 workers and the exporter
    assert len(set(ports.values())) == len(ports) == 5
    lines = [line for line in out["Procfile"].splitlines() if not line.startswith("#")]
    beat = next(line for line in lines if line.startswith("beat:"))
    assert shlex.split(beat.split(":", 1)[1]) == [
        "CELERY_KIT_BEAT__METRICS_PORT=9812", "celery", "-A", "proj", "kit", "beat"
    ]  # fmt: skip


def test_compose_beat_service_validates_and_probes_the_beat() -> None:
    text = files()["compose/compose.yaml"]
    compose_spec.PyCompose.from_yaml(text).validate()
    beat = yaml.safe_load(text)["services"]["celery-beat"]
    assert beat["command"] == ["celery", "-A", "proj", "kit", "beat"]
    assert beat["healthcheck"]["test"][1:] == [
        "python", "-m", "celery_kit.health", "--liveness", "--file",
        beat["environment"]["CELERY_KIT_BEAT__HEARTBEAT_FILE"],
    ]  # fmt: skip
