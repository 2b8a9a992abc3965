"""Liveness/readiness probes against real prefork workers on a real Redis.

Given/When/Then in each test. Probes run as Kubernetes runs them: a separate process
(``python -m celery_kit.health``) reading the heartbeat file; "within the age" is expressed
by polling the probe until it fails, with a generous timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from pathlib import Path

import pytest

from celery_kit.testing import RedisServer
from tests.integration.support.observe import (
    APPS,
    FreezableProxy,
    obs_env,
    producer,
    result_of,
    run_probe,
    wait_for,
)

pytestmark = pytest.mark.timeout(180)

#: The probes' configured age (interval 1 s); every wait below is several times longer.
MAX_AGE_S = 4.0


def _heartbeat(tmp_path: Path) -> Path:
    found = list(tmp_path.glob("heartbeat-*.json"))
    assert len(found) == 1, found
    return found[0]


def _passes(kind: str, path: Path) -> bool:
    return run_probe(kind, path)[0] == 0


def _fails(kind: str, path: Path) -> str:
    code, out = run_probe(kind, path)
    return out if code == 1 else ""


def test_liveness_fails_while_the_worker_is_stopped_and_passes_after(
    kit_redis_url: str, kit_worker, tmp_path: Path
) -> None:
    env = obs_env(kit_redis_url, kit_redis_url, tmp_path, max_age_s=MAX_AGE_S)
    worker = kit_worker("kit_observe", env=env, concurrency=2, pythonpath=[APPS])
    beat = tmp_path / f"heartbeat-{worker.hostname.split('@')[0]}.json"

    # Given a healthy idle worker: both probes pass (and keep passing past the age)
    wait_for(lambda: _passes("readiness", beat), timeout_s=30, what="readiness")
    wait_for(lambda: _passes("liveness", beat), timeout_s=30, what="liveness")
    threading.Event().wait(MAX_AGE_S + 1)
    assert _passes("liveness", beat)
    # When its main process is frozen (SIGSTOP)
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        # Then liveness fails once the age has passed, naming the cause
        out = wait_for(lambda: _fails("liveness", beat), timeout_s=30, what="liveness to fail")
        assert "not written" in out
        assert _fails("readiness", beat)
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    # And passes again once it runs
    wait_for(lambda: _passes("liveness", beat), timeout_s=30, what="liveness after SIGCONT")
    assert producer(env).send_task("kit_observe.pid").get(timeout=30) in worker.pool_pids()


def test_liveness_fails_while_redis_is_down_and_passes_after_it_returns(
    kit_worker, tmp_path: Path
) -> None:
    (tmp_path / "redis").mkdir()
    with RedisServer(workdir=tmp_path / "redis") as server:
        url = server.url(1)
        env = obs_env(url, url, tmp_path, max_age_s=MAX_AGE_S)
        worker = kit_worker("kit_observe", env=env, concurrency=2, pythonpath=[APPS])
        beat = _heartbeat(tmp_path)
        wait_for(lambda: _passes("liveness", beat), timeout_s=30, what="liveness")
        wait_for(lambda: _passes("readiness", beat), timeout_s=30, what="readiness")

        # When the broker goes away for several times the age
        restart = threading.Thread(target=server.restart, kwargs={"down_for_s": 4 * MAX_AGE_S})
        restart.start()
        try:
            # Then readiness and liveness fail while it is down
            wait_for(lambda: _fails("readiness", beat), timeout_s=15, what="readiness to fail")
            wait_for(lambda: _fails("liveness", beat), timeout_s=15, what="liveness to fail")
        finally:
            restart.join()
        # And both pass again after the worker reconnected, and it consumes
        wait_for(lambda: _passes("liveness", beat), timeout_s=90, what="liveness after restart")
        wait_for(lambda: _passes("readiness", beat), timeout_s=30, what="readiness after restart")
        app = producer(env)
        task_id = app.send_task("kit_observe.pid").id
        assert result_of(app, task_id, timeout_s=30) in worker.pool_pids()


def test_liveness_catches_a_connected_worker_that_stopped_consuming(
    kit_worker, tmp_path: Path
) -> None:
    (tmp_path / "redis").mkdir()
    with RedisServer(workdir=tmp_path / "redis") as server:
        proxy = FreezableProxy(server.port)
        try:
            direct, via_proxy = server.url(1), f"redis://127.0.0.1:{proxy.port}/1"
            # kombu's own half-open BRPOP check is off, so the worker stays a ghost until
            # the network heals (with the kit's default it reconnects after ~2 x 30 s)
            env = obs_env(
                via_proxy,
                direct,
                tmp_path,
                max_age_s=MAX_AGE_S,
                CELERY_KIT_BROKER__HEALTH_CHECK_INTERVAL_S="0",
            )
            worker = kit_worker("kit_observe", env=env, concurrency=2, pythonpath=[APPS])
            beat = _heartbeat(tmp_path)
            wait_for(lambda: _passes("liveness", beat), timeout_s=30, what="liveness")
            app = producer({**env, "CELERY_BROKER_URL": direct})

            # Given the worker's polling (BRPOP) connection silently stops carrying data
            # (no FIN, no RST), while its other connections and the event loop still work
            assert proxy.freeze(polling_only=True) >= 1
            # When work arrives that it does not pick up
            ids = [app.send_task("kit_observe.pid").id for _ in range(3)]
            # Then liveness fails within the age, and the heartbeat names the symptom
            out = wait_for(lambda: _fails("liveness", beat), timeout_s=30, what="liveness to fail")
            assert "not consuming" in out, out
            assert re.search(r"\d message\(s\) wait in default while 0 of 2 slots", out), out
            assert json.loads(beat.read_text())["written_at"] > 0  # the loop still ran
            # And once the network heals, it consumes and passes again
            proxy.thaw()
            pids = {result_of(app, task_id, timeout_s=60) for task_id in ids}
            assert pids <= set(worker.pool_pids())
            wait_for(lambda: _passes("liveness", beat), timeout_s=30, what="liveness after thaw")
        finally:
            proxy.close()
