"""Shared helpers of the reliability integration tests (retries, DLQ, idempotency, locks,
rate limits, poison messages). Not a test module."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from celery import Celery

from celery_kit import Settings, make_app
from tests.integration.support.apps import APPS as APPS
from tests.integration.support.apps import app_env, run_kit

APP = "kit_reliability"


def kit_env(broker: str, state: str, **settings: str) -> dict[str, str]:
    """Worker environment with limits shrunk so every test runs in seconds.

    The derived visibility timeout is 20 s (hard limit) + 10 s (longest countdown) + 1 s.
    """
    fixed = {
        "CELERY_KIT_TASKS__SOFT_TIME_LIMIT_S": "15",
        "CELERY_KIT_TASKS__TIME_LIMIT_S": "20",
        "CELERY_KIT_TASKS__MAX_COUNTDOWN_S": "10",
        "CELERY_KIT_TASKS__RETRY_BACKOFF_MAX_S": "2",
        "CELERY_KIT_BROKER__VISIBILITY_MARGIN_S": "1",
    }
    return app_env(broker, state, fixed, **settings)


def producer(env: dict[str, str]) -> Celery:
    """The test's own app, configured exactly like the worker's (no os.environ)."""
    return make_app(APP, settings=Settings(_environ=env))


def kit_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``celery -A kit_reliability kit ARGS`` for real, as an operator would."""
    return run_kit(APP, env, *args)


def dlq_entries(env: dict[str, str], *extra: str) -> list[dict[str, Any]]:
    """``kit dlq list --json`` parsed."""
    done = kit_cli(env, "dlq", "list", "--json", *extra)
    assert done.returncode == 0, done.stderr
    entries: list[dict[str, Any]] = json.loads(done.stdout)
    return entries
