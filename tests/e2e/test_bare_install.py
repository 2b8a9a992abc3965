"""A bare ``pip install celery_kit`` (the built wheel, no extras) runs a task on Redis.

Builds the wheel, installs it into a fresh virtualenv with no extras (pip's cache keeps
this fast), and runs one task through a real worker of that virtualenv on the private
Redis. It needs the package index (PyPI or the machine's pip configuration): without it
the test skips locally and fails under CI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from celery_kit.testing import RedisServer
from celery_kit.testing.processes import popen, stop_process, wait_until

ROOT = Path(__file__).parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PROJECT = """
from celery_kit import make_app

app = make_app("bareproj")


@app.task(name="bareproj.add")
def add(x, y):
    return x + y
"""

CALL = """
import bareproj
print("RESULT", bareproj.add.delay(2, 3).get(timeout=30))
"""


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, **kwargs)  # type: ignore[call-overload,no-any-return]


def _needs_index(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode == 0:
        return
    message = (
        f"{what} failed (package index unreachable?):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def test_wheel_without_extras_runs_a_task_on_redis(
    tmp_path: Path, kit_redis_server: RedisServer
) -> None:
    # Given the wheel, built the way pip builds it (isolated build environment)
    wheels = tmp_path / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(ROOT)])
    _needs_index(built, "building the wheel")
    assert "SetuptoolsDeprecationWarning" not in built.stdout + built.stderr
    (wheel,) = wheels.glob("celery_kit-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        metadata = next(zf.read(n).decode() for n in zf.namelist() if n.endswith("METADATA"))
    assert "License-Expression: MIT" in metadata
    # And a fresh virtualenv with only that wheel installed (no extras)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    _needs_index(_run([python, "-m", "pip", "install", "-q", str(wheel)]), "pip install")
    # When a worker of that virtualenv serves a task on Redis
    (tmp_path / "bareproj.py").write_text(PROJECT)
    db = kit_redis_server.fresh_db()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PYTHON"))}
    env.update(
        CELERY_BROKER_URL=kit_redis_server.url(db), CELERY_RESULT_BACKEND=kit_redis_server.url(db)
    )
    log = tmp_path / "worker.log"
    argv = [python, "-m", "celery", "-A", "bareproj", "worker", "-P", "solo", "-l", "info"]
    worker = popen(argv, log, env=env, cwd=tmp_path, start_new_session=True)
    try:
        wait_until(
            lambda: "ready." in log.read_text(errors="replace") or worker.poll() is not None,
            timeout_s=60,
            what="the bare worker to start",
        )
        assert worker.poll() is None, log.read_text(errors="replace")
        called = _run([python, "-c", CALL], env=env, cwd=tmp_path)
        # Then the task ran
        assert called.returncode == 0, called.stderr + log.read_text(errors="replace")
        assert "RESULT 5" in called.stdout
    finally:
        stop_process(worker, signal.SIGTERM, group=True, timeout_s=10)
