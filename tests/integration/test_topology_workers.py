"""Worker profiles on real brokers: the commands the kit prints start the workers it promised.

Workers here are started the way users start them (``celery -A app kit worker NAME`` and
the lines ``celery -A app kit workers`` prints), wrapped in the harness's WorkerProcess.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from amqp.exceptions import PreconditionFailed
from celery import Celery
from kombu import Connection, Queue

from celery_kit import Settings, make_app
from celery_kit.testing import WorkerProcess

APPS = str(Path(__file__).parent / "apps")
BIN = str(Path(sys.executable).parent)
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def apps() -> Iterator[list[Celery]]:
    """Producer apps to close at teardown."""
    made: list[Celery] = []
    yield made
    for app in made:
        app.close()


def topology_env(broker_url: str, state_url: str, config: Path) -> dict[str, str]:
    """The environment of the user's shell: config file, broker, app on the path."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CELERY")}
    return {
        **base,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": state_url,
        "CELERY_KIT_CONFIG": str(config),
        "KIT_TEST_STATE_URL": state_url,
        "PYTHONPATH": APPS,
        "PYTHONUNBUFFERED": "1",
        "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
    }


def start(
    argv: Sequence[str], *, env: dict[str, str], name: str, log_dir: Path, kit_worker: Any
) -> WorkerProcess:
    """Start a worker command line; the harness stops it at teardown."""
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv), env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    worker = WorkerProcess(proc, hostname=f"{name}@{socket.gethostname()}", log_path=log_path)
    kit_worker.workers.append(worker)
    worker.wait_for_log(f"{worker.hostname} ready.", timeout_s=60)
    return worker


def celery_cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "kit_topology", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def inspect(what: str, hostnames: Sequence[str], env: dict[str, str]) -> dict[str, Any]:
    """``celery inspect WHAT --json`` against exactly these nodes."""
    out = celery_cli("inspect", what, "--json", "-d", ",".join(hostnames), env=env)
    replies: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return replies


def test_critical_profile_serves_critical_tasks_while_bulk_is_saturated(
    kit_redis_url: str, kit_worker: Any, tmp_path: Path, apps: list[Celery]
) -> None:
    config = tmp_path / "kit.toml"
    config.write_text(
        "[queues]\ncritical = {}\ndefault = {}\nbulk = { priority = false }\n\n"
        '[routes]\n"topo.w*" = "critical"\n"topo.sleep" = "bulk"\n\n'
        '[workers.critical]\nqueues = ["critical"]\nconcurrency = 1\n\n'
        '[workers.bulk]\nqueues = ["bulk"]\nkind = "bulk"\nconcurrency = 1\n'
    )
    env = topology_env(kit_redis_url, kit_redis_url, config)
    app = make_app("kit_topology", settings=Settings(_environ=env))
    apps.append(app)
    r = redis.Redis.from_url(kit_redis_url)
    kit = [sys.executable, "-m", "celery", "-A", "kit_topology", "kit", "worker"]
    critical = start([*kit, "critical"], env=env, name="critical", log_dir=tmp_path,
                     kit_worker=kit_worker)  # fmt: skip
    start([*kit, "bulk"], env=env, name="bulk", log_dir=tmp_path, kit_worker=kit_worker)

    # Given the bulk worker saturated by a long backlog routed to `bulk` by name
    for _ in range(20):
        app.send_task("topo.sleep", (0.5,))
    deadline = time.monotonic() + 30
    while not r.get("sleep:started") and time.monotonic() < deadline:
        time.sleep(0.05)
    # When a task whose name matches the `topo.w*` glob is sent by name
    seen = app.send_task("topo.where").get(timeout=30)
    # Then the critical worker runs it from the critical queue, while bulk is still busy
    assert seen["queue"] == "critical"
    assert seen["hostname"] == critical.hostname
    assert int(r.get("sleep:started") or 0) < 20
    # and the bulk queue still holds backlog (a FIFO queue is one list on Redis, the one
    # of its default priority: bulk:4 for Priority.NORMAL)
    assert r.llen("bulk:4") > 0
    r.delete("bulk:4")


def test_printed_worker_commands_consume_exactly_the_declared_queues(
    kit_redis_url: str, kit_worker: Any, tmp_path: Path
) -> None:
    config = tmp_path / "kit.toml"
    config.write_text(
        '[routes]\n"proj.reports.*" = "bulk"\n\n'
        '[workers.fast]\nqueues = ["critical", "high", "default"]\nconcurrency = 1\n\n'
        '[workers.bulk]\nqueues = ["low", "bulk"]\nkind = "bulk"\n'
        "autoscale = { max = 2, min = 1 }\nmax_tasks_per_child = 50\n"
        "soft_shutdown_timeout_s = 7\n"
    )
    env = topology_env(kit_redis_url, kit_redis_url, config)
    # Given the lines `celery -A kit_topology kit workers` prints (a Procfile)
    lines = celery_cli("kit", "workers", env=env).strip().splitlines()
    commands = dict(line.split(": ", 1) for line in lines)
    assert list(commands) == ["fast", "bulk"]
    # When each line is run as a shell would run it (VAR=value prefixes, then argv)
    for name, command in commands.items():
        words = shlex.split(command)
        n = next(i for i, word in enumerate(words) if not ASSIGNMENT.match(word))
        run_env = {**env, **dict(word.split("=", 1) for word in words[:n])}
        start(words[n:], env=run_env, name=name, log_dir=tmp_path, kit_worker=kit_worker)
    hosts = {name: f"{name}@{socket.gethostname()}" for name in commands}
    # Then `celery inspect active_queues` shows each worker on exactly its profile's queues
    active = inspect("active_queues", list(hosts.values()), env)
    consumed = {name: [q["name"] for q in active[host]] for name, host in hosts.items()}
    assert consumed == {"fast": ["critical", "high", "default"], "bulk": ["low", "bulk"]}
    # and with the profile's pool, prefetch and soft-shutdown settings
    stats = inspect("stats", list(hosts.values()), env)
    assert stats[hosts["fast"]]["pool"]["max-concurrency"] == 1
    assert stats[hosts["fast"]]["prefetch_count"] == 1  # latency: 1 x 1 process
    assert stats[hosts["bulk"]]["autoscaler"] | {"current": 0, "qty": 0} == {
        "max": 2, "min": 1, "current": 0, "qty": 0
    }  # fmt: skip
    assert stats[hosts["bulk"]]["prefetch_count"] == 2 * 4  # bulk: 4 per process (max 2)
    assert stats[hosts["bulk"]]["pool"]["max-tasks-per-child"] == 50
    # every process derives the same visibility timeout: under the kit's Redis transport
    # 4 x the renewal interval, whatever the bulk prefetch (held messages are renewed; the
    # budget with kombu's transport is checked in tests/unit/topology/test_queues.py)
    transport = stats[hosts["fast"]]["broker"]["transport_options"]
    assert transport["visibility_timeout"] == 4 * 15.0
    conf = inspect("conf", [hosts["bulk"]], env)[hosts["bulk"]]
    assert conf["worker_soft_shutdown_timeout"] == 7.0


def test_rabbitmq_declares_quorum_and_priority_queues_as_configured(
    kit_amqp_url: str, kit_unique_name: str, tmp_path: Path, apps: list[Celery]
) -> None:
    fifo, prio = f"{kit_unique_name}-quorum", f"{kit_unique_name}-prio"
    config = tmp_path / "kit.toml"
    config.write_text(
        f'[tasks]\ndefault_queue = "{prio}"\n\n[queues]\n'
        f'"{fifo}" = {{ queue_type = "quorum" }}\n"{prio}" = {{ max_priority = 5 }}\n'
    )
    app = make_app("producer", settings=Settings(config, _environ={}, broker_url=kit_amqp_url))
    apps.append(app)
    try:
        # Given one message through each queue (publishing declares them)
        app.send_task("topo.where", queue=fifo)
        app.send_task("topo.where", queue=prio, priority=9)
        with Connection(kit_amqp_url) as conn:
            # Then the broker holds them with the declared arguments: redeclaring either
            # queue with other arguments is refused (406 PRECONDITION_FAILED)
            for name, other in ((fifo, {}), (prio, {"x-max-priority": 9})):
                with pytest.raises(PreconditionFailed, match="inequivalent arg"):
                    Queue(name, queue_arguments=other)(conn.channel()).declare()
            # and kit priority 9 arrives as 5 on a queue with x-max-priority = 5
            message = conn.channel().basic_get(prio, no_ack=True)
            assert message.properties["priority"] == 5
    finally:
        with Connection(kit_amqp_url) as conn:
            for name in (fifo, prio):
                conn.channel().queue_delete(name)
