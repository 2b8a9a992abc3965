"""Shutdown as rendered: SIGTERM to the worker's main process (as the kubelet sends it to
PID 1) ends it before the rendered grace period, and a long task is back in the queue at
once and completed by another worker; a short one finishes first. Redis and RabbitMQ.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from celery_kit import Settings, make_app
from celery_kit.render import render
from celery_kit.testing import WorkerProcess, wait_until

APPS = str(Path(__file__).parent / "apps")
BIN = str(Path(sys.executable).parent)
#: Seconds a running task gets after SIGTERM (the profile's soft_shutdown_timeout_s).
SOFT_S = 2
pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def setup(broker: tuple[str, str], state_url: str, tmp_path: Path, name: str) -> dict[str, Any]:
    """Config with two profiles on one queue, rendered; the environment of a pod."""
    url, queue = broker
    config = tmp_path / "kit.toml"
    config.write_text(
        f'broker_url = "{url}"\nresult_backend = "{state_url}"\n'
        "[tasks]\nsoft_time_limit_s = 50\ntime_limit_s = 60\n"
        f"[queues]\n{queue} = {{}}\n"
        f'[workers.{name}a]\nqueues = ["{queue}"]\nconcurrency = 1\n'
        f"soft_shutdown_timeout_s = {SOFT_S}\n"
        f'[workers.{name}b]\nqueues = ["{queue}"]\nconcurrency = 1\n'
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("CELERY")}
    env = {**base, "CELERY_KIT_CONFIG": str(config), "KIT_TEST_STATE_URL": state_url,
           "PYTHONPATH": APPS, "PYTHONUNBUFFERED": "1",
           "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}  # fmt: skip
    settings = Settings(_environ=env)
    docs = list(yaml.safe_load_all(render("k8s", settings, app="kit_render")["k8s/celery.yaml"]))
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] == "Deployment"
    }
    return {"env": env, "settings": settings, "queue": queue, "pods": pods}


def start_pod(
    pod: dict[str, Any], env: dict[str, str], tmp_path: Path, kit_worker: Any
) -> WorkerProcess:
    """Run the rendered container command with the rendered environment."""
    container = pod["containers"][0]
    rendered = {e["name"]: e["value"] for e in container["env"]}
    # the heartbeat goes next to the log instead of the shared /tmp
    rendered["CELERY_KIT_HEALTH__HEARTBEAT_FILE"] = str(tmp_path / "%n.heartbeat.json")
    argv = container["command"]
    node = argv[argv.index("-n") + 1].split("@")[0]
    log = tmp_path / f"{node}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            env={**env, **rendered},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(proc, hostname=f"{node}@{socket.gethostname()}", log_path=log)
    kit_worker.workers.append(worker)
    worker.wait_for_log(f"{worker.hostname} ready.", timeout_s=60)
    return worker


def records(r: redis.Redis, key: str) -> list[tuple[str, float]]:
    return [tuple(json.loads(x)) for x in r.lrange(key, 0, -1)]  # type: ignore[misc]


def test_sigterm_requeues_a_long_task_at_once_and_another_worker_completes_it(
    broker: tuple[str, str], kit_redis_url: str, kit_unique_name: str, kit_worker: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    s = setup(broker, kit_redis_url, tmp_path, kit_unique_name)
    pod_a = s["pods"][f"celery-worker-{kit_unique_name}a"]
    grace = pod_a["terminationGracePeriodSeconds"]
    assert grace == SOFT_S + s["settings"].deploy.shutdown_margin_s
    r = redis.Redis.from_url(kit_redis_url)
    app = make_app("kit_render", settings=s["settings"])
    try:
        a = start_pod(pod_a, s["env"], tmp_path, kit_worker)
        # Given a task that runs far longer than the grace period, running on worker a
        result = app.send_task("render.long", ("long", 300, 0.5), queue=s["queue"])
        wait_until(lambda: records(r, "starts:long"), timeout_s=30, what="the task to start")
        b = start_pod(s["pods"][f"celery-worker-{kit_unique_name}b"], s["env"], tmp_path,
                      kit_worker)  # fmt: skip
        # When a gets SIGTERM on its main process, as the kubelet sends it
        sent = time.time()
        os.kill(a.pid, signal.SIGTERM)
        # Then a exits before the rendered grace period (the kubelet would SIGKILL it then)
        wait_until(lambda: not a.is_alive(), timeout_s=grace + 30, what="worker a to exit")
        exited_s = time.time() - sent
        assert exited_s < grace, a.log_text()[-3000:]
        # and the task went back to the queue at once: b starts and completes it
        assert result.get(timeout=30) == b.hostname
        starts = records(r, "starts:long")
        assert [host for host, _ in starts] == [a.hostname, b.hostname]
        assert records(r, "done:long")[0][0] == b.hostname
        restarted_s = starts[1][1] - sent
        # not after the visibility timeout (Redis) or a consumer timeout: the test's own
        # timeout is shorter than either, so reaching this line shows it
        print(f"SIGTERM -> exit {exited_s:.2f} s, SIGTERM -> restarted on b {restarted_s:.2f} s")
    finally:
        app.close()


def test_sigterm_lets_a_short_task_finish_within_the_soft_shutdown(
    broker: tuple[str, str], kit_redis_url: str, kit_unique_name: str, kit_worker: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    s = setup(broker, kit_redis_url, tmp_path, kit_unique_name)
    pod_a = s["pods"][f"celery-worker-{kit_unique_name}a"]
    r = redis.Redis.from_url(kit_redis_url)
    app = make_app("kit_render", settings=s["settings"])
    try:
        a = start_pod(pod_a, s["env"], tmp_path, kit_worker)
        # Given a task that needs less than the soft shutdown timeout to finish
        result = app.send_task("render.long", ("short", SOFT_S / 2, 0.1), queue=s["queue"])
        wait_until(lambda: records(r, "starts:short"), timeout_s=30, what="the task to start")
        # When a gets SIGTERM
        os.kill(a.pid, signal.SIGTERM)
        wait_until(lambda: not a.is_alive(), timeout_s=60, what="worker a to exit")
        # Then the task finished on a, once, and its result is stored
        assert result.get(timeout=10) == a.hostname
        assert [host for host, _ in records(r, "starts:short")] == [a.hostname]
    finally:
        app.close()


def test_sigterm_while_draining_a_backlog_loses_no_message(
    broker: tuple[str, str], kit_redis_url: str, kit_unique_name: str, kit_worker: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    s = setup(broker, kit_redis_url, tmp_path, kit_unique_name)
    r = redis.Redis.from_url(kit_redis_url)
    app = make_app("kit_render", settings=s["settings"])
    try:
        a = start_pod(s["pods"][f"celery-worker-{kit_unique_name}a"], s["env"], tmp_path,
                      kit_worker)  # fmt: skip
        # Given a backlog being drained by a
        results = [
            app.send_task("render.long", (f"q{i}", 0.2, 0.2), queue=s["queue"]) for i in range(20)
        ]
        try:
            wait_until(lambda: r.exists("done:q2"), timeout_s=60, what="draining to start")
        except AssertionError as exc:  # seen once under a loaded machine: say what a did
            raise AssertionError(f"{exc}; worker a's log ends:\n{a.log_text()[-4000:]}") from None
        # When a gets SIGTERM mid-drain and b takes over
        os.kill(a.pid, signal.SIGTERM)
        wait_until(lambda: not a.is_alive(), timeout_s=60, what="worker a to exit")
        start_pod(s["pods"][f"celery-worker-{kit_unique_name}b"], s["env"], tmp_path,
                  kit_worker)  # fmt: skip
        # Then every task completes (the ones a held, running or prefetched, included)
        for result in results:
            result.get(timeout=60)
        assert all(r.exists(f"done:q{i}") for i in range(20))
    finally:
        app.close()


def test_sigkill_during_the_soft_shutdown_leaves_the_task_unacknowledged(
    broker: tuple[str, str], kit_redis_url: str, kit_unique_name: str, kit_worker: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The fault the grace period exists for: the kubelet SIGKILLs the container early."""
    s = setup(broker, kit_redis_url, tmp_path, kit_unique_name)
    r = redis.Redis.from_url(kit_redis_url)
    app = make_app("kit_render", settings=s["settings"])
    try:
        a = start_pod(s["pods"][f"celery-worker-{kit_unique_name}a"], s["env"], tmp_path,
                      kit_worker)  # fmt: skip
        app.send_task("render.long", ("killed", 300, 0.5), queue=s["queue"])
        wait_until(lambda: records(r, "starts:killed"), timeout_s=30, what="the task to start")
        # When SIGTERM is followed by SIGKILL of the whole container during the soft wait
        os.kill(a.pid, signal.SIGTERM)
        a.wait_for_log("Soft Shutdown", timeout_s=10)
        a.kill()
        if s["settings"].is_redis_broker:
            # Then on Redis the message is not lost but held as unacknowledged: it comes
            # back only after the visibility timeout (60 s with the kit's Redis transport)
            assert r.hlen("unacked") == 1
            assert records(r, "starts:killed")[0][0] == a.hostname
            return
        # On RabbitMQ the closed connection returns it at once: b runs it
        b = start_pod(s["pods"][f"celery-worker-{kit_unique_name}b"], s["env"], tmp_path,
                      kit_worker)  # fmt: skip
        wait_until(lambda: r.exists("done:killed"), timeout_s=30, what="b to run the task")
        assert records(r, "done:killed")[0][0] == b.hostname
    finally:
        app.close()
