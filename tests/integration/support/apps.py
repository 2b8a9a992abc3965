"""The test apps under tests/integration/apps: their environment and their ``kit`` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

APPS = str(Path(__file__).parents[1] / "apps")


def app_env(broker: str, state: str, fixed: dict[str, str], **settings: str) -> dict[str, str]:
    """A worker/producer environment: the broker, the state Redis (result backend, the
    kit's Redis, the test apps' own records), ``fixed`` variables, then ``settings`` as
    ``CELERY_KIT_<NAME>`` (``tasks__time_limit_s="5"``)."""
    env = {
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": state,
        "KIT_TEST_STATE_URL": state,
        "CELERY_KIT_REDIS__URL": state,
        **fixed,
    }
    env.update({f"CELERY_KIT_{k.upper()}": v for k, v in settings.items()})
    return env


def child_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without its Celery settings, plus ``env`` and the apps
    on PYTHONPATH: what a subprocess of a test app runs with."""
    child = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    child.update(env, PYTHONPATH=os.pathsep.join([APPS, child.get("PYTHONPATH", "")]))
    return child


def run_kit(app: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``celery -A APP kit ARGS`` for real, as an operator would."""
    argv = [sys.executable, "-m", "celery", "-A", app, "kit", *args]
    return subprocess.run(
        argv, env=child_env(env), capture_output=True, text=True, timeout=60, check=False
    )
