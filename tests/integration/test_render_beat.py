"""The rendered beat Deployment, run for real: its command starts a leading beat, its probe
reads the heartbeat that beat writes, and its metrics port serves the beat's metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from celery_kit import Settings
from celery_kit.render import render
from celery_kit.testing import wait_until
from tests.integration.support.beat import APPS, beat_env
from tests.integration.support.observe import free_port, parse, value

ENTRY = """
[metrics]
enabled = true

[beat]
max_loop_interval_s = 1
metrics_port = {port}
heartbeat_file = "{heartbeat}"

[beat.schedule.every2]
task = "kit_beat.tick"
every_s = 2
args = ["rendered"]

[workers.w]
queues = ["default"]
concurrency = 1
"""
#: Prometheus-style scrapes of loopback: never through a proxy from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _local(argv: list[str]) -> list[str]:
    """The container's command with this interpreter for ``celery`` / ``python``."""
    if argv[0] == "celery":
        return [sys.executable, "-m", "celery", *argv[1:]]
    assert argv[0] == "python", argv
    return [sys.executable, *argv[1:]]


def _scrape(port: int) -> dict[Any, float]:
    try:
        with _NO_PROXY.open(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return parse(reply.read().decode())
    except OSError:
        return {}


def test_rendered_beat_command_probe_and_metrics_port_work_together(
    kit_redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "kit.toml"
    config.write_text(ENTRY.format(port=port, heartbeat=tmp_path / "beat.heartbeat.json"))
    env = beat_env(broker=kit_redis_url, state=kit_redis_url, config=config)
    settings = Settings(_environ=env)
    docs = yaml.safe_load_all(render("k8s", settings, app="kit_beat")["k8s/celery.yaml"])
    deployment = next(d for d in docs if d["metadata"]["name"] == "celery-beat")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    # Given the rendered container: its command and env, plus what the Secret would hold
    base = {k: v for k, v in os.environ.items() if not k.startswith("CELERY")}
    rendered_env = {e["name"]: e["value"] for e in container["env"]}
    child = {**base, **env, **rendered_env, "PYTHONPATH": APPS, "PYTHONUNBUFFERED": "1"}
    probe = _local(container["livenessProbe"]["exec"]["command"])
    assert subprocess.run(probe, capture_output=True, env=base).returncode == 1  # no beat yet
    log = tmp_path / "beat.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(_local(container["command"]), env=child, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        # When it runs, Then the rendered liveness probe passes on the beat's own heartbeat
        wait_until(
            lambda: (
                subprocess.run(probe, capture_output=True, env=base).returncode == 0
                or proc.poll() is not None
            ),
            timeout_s=60,
            what="the rendered beat probe to pass",
        )
        assert proc.poll() is None, log.read_text()
        # and the rendered metrics port serves it as the leader, sending the entry
        (metrics,) = container["ports"]
        sent = "celery_beat_runs_sent_total"
        samples = wait_until(
            lambda: (s := _scrape(metrics["containerPort"])) and value(s, sent) >= 1 and s,
            timeout_s=30,
            what="beat metrics with a sent run",
        )
        assert value(samples, "celery_beat_leader") == 1
        # When Kubernetes stops it (SIGTERM), Then it exits on its own
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
