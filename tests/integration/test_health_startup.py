"""The heartbeat from the first moment of a real worker, and no false warning at start.

A worker whose broker is not reachable yet has its heartbeat file from init (not ready,
inside the start-up grace), so a liveness probe in that gap passes and readiness fails.
A worker that starts with messages already waiting logs no "not consuming" WARNING.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from celery_kit.testing.processes import popen, stop_process
from tests.integration.support.observe import APPS, obs_env, producer, run_probe, wait_for

pytestmark = pytest.mark.timeout(120)


def test_heartbeat_exists_from_worker_init_before_the_broker_answers(tmp_path: Path) -> None:
    # Given a broker address nothing listens on (the worker keeps retrying to connect)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PROMETHEUS"))}
    env.update(obs_env(dead, dead, tmp_path, max_age_s=60), PYTHONPATH=APPS)
    env["CELERY_KIT_REDIS__URL"] = dead
    log = tmp_path / "worker.log"
    argv = [sys.executable, "-m", "celery", "-A", "kit_observe", "worker", "-n", "early@%h"]
    worker = popen([*argv, "-P", "solo"], log, env=env, start_new_session=True)
    beat = tmp_path / "heartbeat-early.json"
    try:
        # When the worker has started but never reached its broker
        wait_for(beat.exists, timeout_s=30, what="the heartbeat file")
        assert "Cannot connect" in log.read_text(errors="replace") or worker.poll() is None
        data = json.loads(beat.read_text())
        # Then the file says "not ready", and the start-up grace holds: live, not ready
        assert data["ready"] is False
        assert run_probe("liveness", beat)[0] == 0
        assert run_probe("readiness", beat)[0] == 1
    finally:
        stop_process(worker, signal.SIGTERM, group=True, timeout_s=10)


def test_no_not_consuming_warning_when_messages_wait_at_start(
    kit_redis_url: str, kit_worker, tmp_path: Path
) -> None:
    env = obs_env(kit_redis_url, kit_redis_url, tmp_path, max_age_s=30)
    # Given messages already waiting in the queue
    app = producer(env)
    results = [app.send_task("kit_observe.pid") for _ in range(20)]
    # When a worker starts and works through them
    worker = kit_worker("kit_observe", env=env, concurrency=2, pythonpath=[APPS])
    for result in results:
        result.get(timeout=30)
    # Then it never claimed not to be consuming
    assert "not consuming" not in worker.log_text()
