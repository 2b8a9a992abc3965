"""A real Prometheus scrapes a real worker and the exporter, with the rendered rules.

Every dashboard query runs without error, the KEDA query counts every priority sub-list,
the per-priority panel shows each level of a queue filled at two priorities, the backlog
alert fires for a filled queue nobody consumes, and the no-worker alert fires
once the queue's worker is stopped. Intervals and ``for:`` are shortened through
``[deploy.alerts]`` so this takes seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from celery_kit import Priority, Settings, make_app
from celery_kit.coordination.dead_letter import dead_letter_from
from celery_kit.coordination.dlq import DeadLetterStore
from celery_kit.render import render, write
from celery_kit.render.dashboard import dashboard_queries
from celery_kit.render.keda import backlog_query
from celery_kit.render.model import Context
from celery_kit.testing import WorkerProcess, wait_until
from tests.integration.support.render import require_binary

APPS = str(Path(__file__).parent / "apps")
BIN = str(Path(sys.executable).parent)
pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]
#: Prometheus listens on loopback: never ask an HTTP proxy from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with _NO_PROXY.open(url, timeout=5) as reply:
        body = json.loads(reply.read())
    assert body["status"] == "success", body
    return body["data"]


@contextlib.contextmanager
def prometheus(config: Path, data: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    binary = require_binary("prometheus")
    argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def firing(port: int, alert: str) -> dict[str, dict[str, str]]:
    """Firing alerts named ``alert``, by queue_name label."""
    alerts = api(port, "alerts")["alerts"]
    return {
        a["labels"].get("queue_name", ""): a["labels"]
        for a in alerts
        if a["labels"]["alertname"] == alert and a["state"] == "firing"
    }


def test_prometheus_scrapes_worker_and_exporter_and_the_rules_fire(
    kit_redis_url: str, kit_worker: Any, tmp_path: Path
) -> None:
    require_binary("prometheus")
    worker_port, exporter_port, prom_port = free_port(), free_port(), free_port()
    config = tmp_path / "kit.toml"
    config.write_text(
        f'broker_url = "{kit_redis_url}"\n'
        "[metrics]\nenabled = true\nqueue_length_interval_s = 0.5\n"
        "[queues]\nwork = {}\nidle = {}\npair = {}\n"
        '[workers.work]\nqueues = ["work"]\nconcurrency = 1\n'
        '[workers.later]\nqueues = ["idle"]\nconcurrency = 2\n'
        "[deploy.alerts]\nfor_s = 1\nwindow_s = 10\ninterval_s = 1\nbacklog_messages = 5\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("CELERY")}
    env = {**base, "CELERY_KIT_CONFIG": str(config), "KIT_TEST_STATE_URL": kit_redis_url,
           "PYTHONPATH": APPS, "PYTHONUNBUFFERED": "1",
           "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}  # fmt: skip
    settings = Settings(_environ=env)
    ctx = Context(settings, "kit_render")

    # Given the rendered rules, a worker of profile `work` and the exporter, both scraped
    write(render("alerts", settings, app="kit_render"), tmp_path)
    prom_config = tmp_path / "prometheus.yml"
    prom_config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "prometheus" / "celery-kit-rules.yml")],
        "scrape_configs": [
            {"job_name": "workers", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
            {"job_name": "exporter",
             "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]},
        ],
    }))  # fmt: skip
    worker_env = {**env, "CELERY_KIT_METRICS__PORT": str(worker_port)}
    log = tmp_path / "work.log"
    argv = [sys.executable, "-m", "celery", "-A", "kit_render", "kit", "worker", "work"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=worker_env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    worker = WorkerProcess(proc, hostname=f"work@{socket.gethostname()}", log_path=log)
    kit_worker.workers.append(worker)  # stopped at teardown by the harness
    worker.wait_for_log(f"{worker.hostname} ready.", timeout_s=60)
    exporter_argv = [*argv[:5], "kit", "exporter", "--port", str(exporter_port)]
    with open(tmp_path / "exporter.log", "ab") as out:
        exporter = subprocess.Popen(exporter_argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
    kit_worker.workers.append(
        WorkerProcess(exporter, hostname="exporter", log_path=tmp_path / "exporter.log")
    )
    app = make_app("kit_render", settings=settings)
    try:
        with prometheus(prom_config, tmp_path / "data", prom_port, tmp_path / "prom.log"):
            wait_until(
                lambda: _targets_up(prom_port) == 2,
                timeout_s=30,
                what="both targets up in Prometheus",
            )
            # some work, a failure and a dead letter for the panels
            results = [app.send_task("render.add", (i, i), queue="work") for i in range(5)]
            app.send_task("render.fail", queue="work")
            for result in results:
                result.get(timeout=30)
            DeadLetterStore(app).add(_dead_letter())

            # Then every dashboard query answers without error, and the main ones have data
            wait_until(
                lambda: _value(prom_port, "max(celery_dlq_entries)") == 1.0,
                timeout_s=30,
                every_s=0.5,
                what="celery_dlq_entries = 1",
            )
            succeeded = 'sum(celery_task_succeeded_total{name="render.add"})'
            wait_until(
                lambda: _value(prom_port, succeeded) == 5.0,
                timeout_s=30,
                every_s=0.5,
                what="5 successes scraped from the worker",
            )
            for query in dashboard_queries(ctx):
                api(prom_port, "query", query=query.replace("$__rate_interval", "10s"))
            up = f'sum(celery_worker_up{{hostname=~"{ctx.node_pattern("work")}"}})'
            assert _value(prom_port, up) == 1

            # When a queue nobody consumes fills up, across every priority sub-list
            for i in range(20):
                app.send_task("render.add", (i, i), queue="idle", priority=i % 10)
            # Then the scaler's query sees all 20 (not the top-priority list alone)
            wait_until(
                lambda: _value(prom_port, backlog_query(ctx, "later")) == 20.0,
                timeout_s=30,
                every_s=0.5,
                what="the KEDA query to count 20 messages",
            )
            # When a queue nobody consumes gets messages at two priority levels
            for level in [Priority.HIGH] * 3 + [Priority.LOW] * 2:
                app.send_task("render.add", (1, 1), queue="pair", priority=level)
            # Then the dashboard's per-priority panel shows those two levels with their counts
            (per_priority,) = [q for q in dashboard_queries(ctx) if "by_priority" in q]
            wait_until(
                lambda: _series(prom_port, per_priority, "pair") == {"7": 3.0, "3": 2.0},
                timeout_s=30,
                every_s=0.5,
                what="the per-priority panel to show pair at priorities 7 (3) and 3 (2)",
            )
            # and they add up to the whole-queue series celery-exporter's dashboards read
            assert _value(prom_port, 'celery_queue_length{queue_name="pair"}') == 5.0
            # and the queue filled over ten priorities shows 2 at each of them
            assert _series(prom_port, per_priority, "idle") == {str(p): 2.0 for p in range(10)}
            # and the backlog alert fires for it
            wait_until(
                lambda: "idle" in firing(prom_port, "CeleryQueueBacklog"),
                timeout_s=30,
                every_s=0.5,
                what="CeleryQueueBacklog firing for idle",
            )
            assert "work" not in firing(prom_port, "CeleryNoWorkerForQueue")

            # When the worker of `work` is stopped
            worker.terminate(timeout_s=20)
            # Then the no-worker alert fires for its queue
            wait_until(
                lambda: "work" in firing(prom_port, "CeleryNoWorkerForQueue"),
                timeout_s=30,
                every_s=0.5,
                what="CeleryNoWorkerForQueue firing for work",
            )
    finally:
        app.close()


def _targets_up(port: int) -> int:
    try:
        targets = api(port, "targets")["activeTargets"]
    except OSError:  # not listening yet
        return 0
    return sum(1 for t in targets if t["health"] == "up")


def _value(port: int, query: str) -> float | None:
    result = api(port, "query", query=query)["result"]
    return float(result[0]["value"][1]) if result else None


def _series(port: int, query: str, queue: str) -> dict[str, float]:
    """The ``priority`` → value series of ``query`` for ``queue``."""
    result = api(port, "query", query=query)["result"]
    return {
        r["metric"]["priority"]: float(r["value"][1])
        for r in result
        if r["metric"].get("queue_name") == queue
    }


def _dead_letter() -> Any:
    return dead_letter_from(
        ValueError("parked"), task_id="render-dlq-1", task_name="render.fail", args=[], kwargs={},
        delivery_info={"routing_key": "work"}, headers={}, reason="retries_exhausted",
        attempts=1, priority=None, hostname="work@test",
    )  # fmt: skip
