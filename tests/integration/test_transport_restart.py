"""Must-show 3: publishes across a Redis restart (AOF, appendfsync always): no
acknowledged publish is lost, the worker survives and resumes by itself, and readiness
fails during the outage and recovers."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import redis

from celery_kit.health import check_readiness
from celery_kit.testing import RedisServer, wait_until
from tests.integration.support.transport import APP, APPS, producer, transport_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

RUNS, PUBLISHES, DOWN_S = 5, 2000, 3.0


def _ready(path: Path) -> bool:
    try:
        return check_readiness(json.loads(path.read_text())).ok
    except (OSError, ValueError):
        return False


def test_publishes_across_redis_restarts_are_not_lost_and_the_worker_survives(
    tmp_path: Path, kit_redis_url: str, kit_worker
) -> None:
    aof = ("--appendonly", "yes", "--appendfsync", "always")
    (tmp_path / "broker").mkdir()
    with RedisServer(workdir=tmp_path / "broker", extra_args=aof) as server:
        env = transport_env(
            server.url(0),
            kit_redis_url,
            HEALTH__INTERVAL_S="0.5",
            HEALTH__BROKER_TIMEOUT_S="0.4",
            HEALTH__MAX_AGE_S="5",
        )
        worker = kit_worker(APP, env=env, pythonpath=[APPS], concurrency=2)
        beat = worker.log_path.with_suffix(".heartbeat.json")
        wait_until(lambda: _ready(beat), timeout_s=20, what="readiness before the test")
        state = redis.Redis.from_url(kit_redis_url)
        app = producer(env)
        report = []
        for run in range(RUNS):
            acked: list[str] = []
            failed = 0
            outage: dict[str, bool] = {}

            def restart(outage: dict[str, bool] = outage) -> None:
                server.kill()  # SIGKILL: no clean shutdown, the AOF is all there is
                deadline = time.monotonic() + DOWN_S
                while time.monotonic() < deadline:
                    if not _ready(beat):
                        outage["not_ready"] = True
                    time.sleep(0.1)
                server.start()

            restarter = threading.Thread(target=restart)
            for i in range(PUBLISHES):
                if i == PUBLISHES // 2:
                    restarter.start()
                token = f"{run}:{i}"
                try:
                    app.send_task("kit_transport.mark", args=[token], ignore_result=True)
                except Exception:
                    failed += 1  # a publish that raised: may or may not be stored
                else:
                    acked.append(token)
            restarter.join()

            # Then every acknowledged publish runs, without anyone restarting the worker
            def missing(acked: list[str] = acked) -> list[str]:
                with state.pipeline() as pipe:
                    for token in acked:
                        pipe.llen(f"runs:{token}")
                    counts = pipe.execute()
                return [t for t, n in zip(acked, counts, strict=True) if not n]

            wait_until(lambda: not missing(), timeout_s=120, what=f"run {run}: every acked task")
            twice = sum(1 for t in acked if state.llen(f"runs:{t}") > 1)
            assert worker.is_alive(), worker.log_text()[-3000:]
            assert outage.get("not_ready"), "readiness did not fail during the outage"
            wait_until(lambda: _ready(beat), timeout_s=20, what="readiness after the outage")
            report.append((run, len(acked), failed, twice))
        print("run, acknowledged, raised, ran twice:", report)
        log = worker.log_text()
        assert "AttributeError" not in log, log[-3000:]
        assert "Traceback" not in log or "Connection to broker lost" in log
        app.close()
