"""Shared helpers of the reliability integration tests (retries, DLQ, idempotency, locks,
rate limits, poison messages). Not a test module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from celery import Celery

from celery_kit import Settings, make_app

APPS = str(Path(__file__).parents[1] / "apps")
APP = "kit_reliability"


def kit_env(broker: str, state: str, **settings: str) -> dict[str, str]:
    """Worker environment with limits shrunk so every test runs in seconds.

    The derived visibility timeout is 20 s (hard limit) + 10 s (longest countdown) + 1 s.
    """
    env = {
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": state,
        "KIT_TEST_STATE_URL": state,
        "CELERY_KIT_REDIS__URL": state,
        "CELERY_KIT_TASKS__SOFT_TIME_LIMIT_S": "15",
        "CELERY_KIT_TASKS__TIME_LIMIT_S": "20",
        "CELERY_KIT_TASKS__MAX_COUNTDOWN_S": "10",
        "CELERY_KIT_TASKS__RETRY_BACKOFF_MAX_S": "2",
        "CELERY_KIT_BROKER__VISIBILITY_MARGIN_S": "1",
    }
    env.update({f"CELERY_KIT_{k.upper()}": v for k, v in settings.items()})
    return env


def producer(env: dict[str, str]) -> Celery:
    """The test's own app, configured exactly like the worker's (no os.environ)."""
    return make_app(APP, settings=Settings(_environ=env))


def kit_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``celery -A kit_reliability kit ARGS`` for real, as an operator would."""
    run_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CELERY_KIT_") and k not in ("CELERY_BROKER_URL",)
    }
    run_env.update(env)
    run_env["PYTHONPATH"] = os.pathsep.join([APPS, run_env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", APP, "kit", *args],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def dlq_entries(env: dict[str, str], *extra: str) -> list[dict[str, Any]]:
    """``kit dlq list --json`` parsed."""
    done = kit_cli(env, "dlq", "list", "--json", *extra)
    assert done.returncode == 0, done.stderr
    entries: list[dict[str, Any]] = json.loads(done.stdout)
    return entries
