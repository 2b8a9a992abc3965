"""Helpers for the beat tests: real ``celery -A kit_beat kit beat`` processes and run records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from celery_kit.testing import wait_until

APPS = str(Path(__file__).parents[1] / "apps")


def write_config(path: Path, entries: str, *, loop_s: float = 1.0) -> Path:
    """A TOML config: ``[beat]`` with a short loop plus the given entry tables."""
    path.write_text(f"[beat]\nmax_loop_interval_s = {loop_s}\n\n{entries}")
    return path


def beat_env(
    *, broker: str, state: str, config: Path, redis_url: str | None = None, **extra: str
) -> dict[str, str]:
    """Environment of a beat or worker process of the ``kit_beat`` app."""
    env = {
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": state,
        "KIT_TEST_STATE_URL": state,
        "CELERY_KIT_CONFIG": str(config),
        "CELERY_KIT_TASKS__SOFT_TIME_LIMIT_S": "20",
        "CELERY_KIT_TASKS__TIME_LIMIT_S": "30",
        "CELERY_KIT_TASKS__MAX_COUNTDOWN_S": "5",
        "CELERY_KIT_TASKS__RETRY_BACKOFF_MAX_S": "5",
        "CELERY_KIT_BROKER__VISIBILITY_MARGIN_S": "5",
    }
    if redis_url is not None:
        env["CELERY_KIT_REDIS__URL"] = redis_url
    env.update(extra)
    return env


class Beat:
    """One ``celery -A kit_beat kit beat`` process (own session, killed by pid)."""

    def __init__(self, env: Mapping[str, str], tmp: Path, name: str) -> None:
        self.log_path = tmp / f"{name}.log"
        self.heartbeat = tmp / f"{name}.heartbeat.json"
        child = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CELERY_KIT_") and k not in ("CELERY_BROKER_URL",)
        }
        child |= dict(env)
        child["CELERY_KIT_BEAT__HEARTBEAT_FILE"] = str(self.heartbeat)
        child["PYTHONPATH"] = os.pathsep.join([APPS, child.get("PYTHONPATH", "")])
        child["PYTHONUNBUFFERED"] = "1"
        argv = [sys.executable, "-m", "celery", "-A", "kit_beat", "kit", "beat", "-l", "INFO"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=child, start_new_session=True
            )
        self.pid = self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def state(self) -> dict[str, Any]:
        """The last heartbeat (empty before the first loop)."""
        try:
            return dict(json.loads(self.heartbeat.read_text()))
        except (OSError, ValueError):
            return {}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_started(self, timeout_s: float = 30) -> None:
        wait_until(lambda: self.state() or not self.alive(), timeout_s=timeout_s, what="beat")
        assert self.alive(), self.log()

    def is_leader(self) -> bool:
        return bool(self.state().get("leader"))

    def kill(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def runs(state_url: str, label: str) -> list[dict[str, Any]]:
    """Every recorded run of ``label``, in start order."""
    client = redis.Redis.from_url(state_url)
    try:
        return [json.loads(raw) for raw in client.lrange(f"runs:{label}", 0, -1)]
    finally:
        client.close()


def duplicate_slots(records: list[dict[str, Any]]) -> dict[float, int]:
    """Slots sent more than once (must stay empty)."""
    counts = Counter(r["slot"] for r in records)
    return {slot: n for slot, n in counts.items() if n > 1}


def missing_slots(records: list[dict[str, Any]], every_s: float) -> list[float]:
    """Slots between the first and the last recorded one that were never sent."""
    slots = sorted(r["slot"] for r in records)
    if not slots:
        return []
    expected = {slots[0] + i * every_s for i in range(round((slots[-1] - slots[0]) / every_s) + 1)}
    return sorted(expected - set(slots))


def leaders(beats: list[Beat]) -> list[int]:
    return [b.pid for b in beats if b.alive() and b.is_leader()]


def sleep_until(ts: float) -> None:
    time.sleep(max(0.0, ts - time.time()))
