"""No secret on the command line of any process the kit starts, nor in what it prints.

``celery --broker=… --result-backend=… -A app kit worker|flower`` exec real processes on a
private Redis that requires a password (an ACL user of its own); the test reads
``/proc/<pid>/cmdline`` of the exec'd process and of every child it forked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from celery_kit.testing import wait_until
from celery_kit.testing.processes import popen, scan_processes, stop_process

APPS = str(Path(__file__).parent / "apps")
SECRET = "argv-secret-" + uuid.uuid4().hex[:8]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def secret_url(kit_redis_url: str) -> Iterator[str]:
    """``redis://USER:SECRET@…`` for an ACL user of the private Redis (removed afterwards)."""
    user = f"kit-{uuid.uuid4().hex[:6]}"
    client = redis.Redis.from_url(kit_redis_url)
    client.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{SECRET}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all"],
    )
    host_db = kit_redis_url.removeprefix("redis://")
    yield f"redis://{user}:{SECRET}@{host_db}"
    client.acl_deluser(user)
    client.close()


def _env(tmp_path: Path) -> dict[str, str]:
    drop = ("CELERY_KIT_", "FLOWER_", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    config = tmp_path / "kit.toml"
    config.write_text('[workers.main]\nqueues = ["default"]\nconcurrency = 1\n')
    env.update(CELERY_KIT_CONFIG=str(config), PYTHONPATH=APPS, PYTHONUNBUFFERED="1")
    env["CELERY_KIT_HEALTH__HEARTBEAT_FILE"] = str(tmp_path / "hb.json")
    env["FLOWER_BASIC_AUTH"] = f"ops:{SECRET}"
    return env


def _cmdlines(pid: int) -> list[str]:
    lines = []
    for each in scan_processes(2, pid):  # the process group: the exec'd leader and children
        try:
            lines.append(Path(f"/proc/{each}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return lines


def _celery(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "celery", f"--broker={url}", f"--result-backend={url}", *args]


def test_kit_worker_runs_without_the_password_in_any_argv(secret_url: str, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    argv = _celery(secret_url, "-A", "kit_basic", "kit", "worker", "main", "-l", "info")
    proc = popen(argv, log, env=_env(tmp_path), start_new_session=True)
    try:
        wait_until(
            lambda: "ready." in log.read_text(errors="replace"), timeout_s=60, what="worker ready"
        )
        lines = _cmdlines(proc.pid)
        assert any(" worker " in line for line in lines), lines  # really the exec'd worker
        assert all(SECRET not in line for line in lines), lines
        assert SECRET not in log.read_text(errors="replace")
    finally:
        stop_process(proc, signal.SIGTERM, group=True, timeout_s=15)


def test_kit_flower_runs_without_the_password_in_argv(secret_url: str, tmp_path: Path) -> None:
    log = tmp_path / "flower.log"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    argv = _celery(secret_url, "-A", "kit_basic", "kit", "flower", "--port", port)
    proc = popen(argv, log, env=_env(tmp_path), start_new_session=True)
    try:
        exec_done = f"flower --address=127.0.0.1 --port={port}"  # the kit's argv, after exec
        wait_until(lambda: exec_done in " ".join(_cmdlines(proc.pid)), timeout_s=30, what="exec")
        lines = _cmdlines(proc.pid)
        assert all(SECRET not in line for line in lines), lines
    finally:
        stop_process(proc, signal.SIGTERM, group=True, timeout_s=15)


@pytest.mark.parametrize(
    "command", [("kit", "workers"), ("kit", "workers", "--json"), ("kit", "flower", "--dry-run")]
)
def test_printed_commands_hold_no_password(
    secret_url: str, tmp_path: Path, command: tuple[str, ...]
) -> None:
    done = subprocess.run(
        _celery(secret_url, "-A", "kit_basic", *command),
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "kit_basic" in done.stdout
    assert SECRET not in done.stdout + done.stderr
