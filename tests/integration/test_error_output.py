"""Kit refusals through the real command line: one short block, exit status 2, no traceback.

``celery -A proj worker|kit …`` and ``celery-kit`` subprocesses; a bad setting refused when
the app is imported, a task limit refused by the worker's start-up checks, and a metrics
port already taken, refused when the worker starts its exporter.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

APPS = str(Path(__file__).parent / "apps")
BAD_ENV = {"CELERY_KIT_TASKS__TIME_LIMIT_S": "abc"}
pytestmark = pytest.mark.timeout(120)


def run(argv: list[str], broker: str, **extra: str) -> subprocess.CompletedProcess[str]:
    drop = ("CELERY_KIT_", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "PROMETHEUS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(CELERY_BROKER_URL=broker, PYTHONPATH=APPS, **extra)
    return subprocess.run(argv, env=env, cwd=APPS, capture_output=True, text=True, timeout=60)


CELERY = [sys.executable, "-m", "celery"]
WORKER = ["worker", "--without-mingle", "--without-gossip", "-P", "solo"]


def assert_short_block(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "Couldn't import" not in done.stderr
    block = done.stderr[done.stderr.index("celery_kit: ") :]
    assert len(block.splitlines()) <= 6, block
    for text in expected:
        assert text in block


@pytest.mark.parametrize(
    "argv",
    [
        [*CELERY, "-A", "kit_basic", *WORKER],
        [*CELERY, "-A", "kit_basic", "kit", "config"],
        [sys.executable, "-m", "celery_kit.cli", "-A", "kit_basic", "config"],
    ],
    ids=["celery worker", "celery kit config", "celery-kit config"],
)
def test_config_error_is_one_block_with_setting_origin_and_exit_2(
    argv: list[str], kit_redis_url: str
) -> None:
    done = run(argv, kit_redis_url, **BAD_ENV)
    assert_short_block(done, "tasks.time_limit_s", "'abc'", "env CELERY_KIT_TASKS__TIME_LIMIT_S")


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        ([*CELERY, "-A", "kit_basic", *WORKER], {"CELERY_KIT_DEBUG": "1"}),
        ([*CELERY, "-A", "kit_basic", "kit", "--traceback", "config"], {}),
    ],
    ids=["CELERY_KIT_DEBUG", "--traceback"],
)
def test_traceback_on_request(argv: list[str], extra: dict[str, str], kit_redis_url: str) -> None:
    done = run(argv, kit_redis_url, **BAD_ENV, **extra)
    assert done.returncode != 0
    assert "Traceback" in done.stderr
    assert "tasks.time_limit_s" in done.stderr


def test_worker_startup_refusal_is_one_block(kit_redis_url: str) -> None:
    # kombu's Redis transport: there the visibility timeout must cover the longest task
    # (the kit's transport renews held messages and accepts this task)
    argv = [*CELERY, "-A", "kit_limits_bad", *WORKER]
    done = run(argv, kit_redis_url, CELERY_KIT_BROKER__TRANSPORT="kombu")
    assert_short_block(done, "kit_limits_bad.too_slow", 'tasks.limits."kit_limits_bad.too_slow"')


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_metrics_port_taken_is_one_block(kit_redis_url: str, taken_port: int) -> None:
    argv = [sys.executable, "-m", "celery_kit.launch", "-A", "kit_basic", *WORKER]
    extra = {"CELERY_KIT_METRICS__ENABLED": "true", "CELERY_KIT_METRICS__PORT": str(taken_port)}
    done = run(argv, kit_redis_url, **extra)
    assert_short_block(done, "cannot listen", "metrics.port")
