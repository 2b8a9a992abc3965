"""Helpers of the transport integration tests. Not a test module."""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from celery_kit import Settings, make_app

APPS = str(Path(__file__).parents[1] / "apps")
APP = "kit_transport"


def transport_env(broker: str, state: str, **settings: str) -> dict[str, str]:
    """Worker environment with the transport's times shrunk: renewal every 1 s, so the
    derived visibility timeout is 4 s; restore checks every 0.5 s."""
    env = {
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": state,
        "KIT_TEST_STATE_URL": state,
        "CELERY_KIT_REDIS__URL": state,
        "CELERY_KIT_BROKER__RENEWAL_INTERVAL_S": "1",
        "CELERY_KIT_BROKER__RESTORE_INTERVAL_S": "0.5",
        "CELERY_KIT_TASKS__SOFT_TIME_LIMIT_S": "100",
        "CELERY_KIT_TASKS__TIME_LIMIT_S": "120",
    }
    env.update({f"CELERY_KIT_{k.upper()}": v for k, v in settings.items()})
    return env


def producer(env: dict[str, str]) -> Celery:
    """The test's own app, configured exactly like the worker's (no os.environ)."""
    return make_app(APP, settings=Settings(_environ=env))
