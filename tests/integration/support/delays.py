"""Helpers of the delay-set integration tests. Not a test module."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from celery_kit import Settings, make_app
from celery_kit.delays.ops import DelaySet
from celery_kit.topology.delays import set_clock
from tests.integration.support.apps import APPS as APPS
from tests.integration.support.apps import app_env, child_env, run_kit

APP = "kit_delays"


def delays_env(broker: str, state: str, **settings: str) -> dict[str, str]:
    """Worker/producer environment: mover every 0.2 s (threshold 3.2 s), short renewals."""
    fixed = {
        "CELERY_KIT_BROKER__RENEWAL_INTERVAL_S": "1",
        "CELERY_KIT_BROKER__RESTORE_INTERVAL_S": "0.5",
        "CELERY_KIT_DELAYS__MOVER_INTERVAL_S": "0.2",
        "CELERY_KIT_DELAYS__LOCK_TTL_S": "3",
    }
    return app_env(broker, state, fixed, **settings)


class Clock:
    """The test's side of the app's delay clock: real time minus ``clock:offset``."""

    def __init__(self, state: redis.Redis) -> None:
        self.state = state

    def set_offset(self, offset_s: float) -> None:
        self.state.set("clock:offset", repr(float(offset_s)))

    def __call__(self) -> float:
        return time.time() - float(self.state.get("clock:offset") or 0.0)


def producer(env: dict[str, str], clock: Clock | None = None) -> Celery:
    """The test's own app, configured like the worker's; with the same delay clock."""
    app = make_app(APP, settings=Settings(_environ=env))
    if clock is not None:
        set_clock(app, clock)
    return app


def runs(state: redis.Redis, token: str) -> list[dict[str, Any]]:
    """The recorded runs of ``token``."""
    return [json.loads(r) for r in state.lrange(f"runs:{token}", 0, -1)]


def queued_ids(broker: redis.Redis) -> list[str]:
    """Task ids of every message in every queue list (priority sub-lists included)."""
    out = []
    for key in broker.scan_iter(match="default*"):
        if broker.type(key) != b"list":
            continue
        for raw in broker.lrange(key, 0, -1):
            out.append(json.loads(raw)["headers"]["id"])
    return out


def delayed_ids(app: Celery) -> list[str]:
    """Task ids waiting in the app's delay set."""
    with DelaySet(app) as ds:
        return [item.task_id for item in ds.list()]


def kit_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``celery -A kit_delays kit ARGS`` with ``env`` (and the apps on PYTHONPATH)."""
    return run_kit(APP, env, *args)


def mover_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A ``celery -A kit_delays kit mover`` subprocess logging to ``log``."""
    child = {**child_env(env), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "celery", "-A", APP, "kit", "mover"]
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=child, stdout=out, stderr=subprocess.STDOUT)


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
