"""Helpers of the transport integration tests. Not a test module."""

from __future__ import annotations

from celery import Celery

from celery_kit import Settings, make_app
from tests.integration.support.apps import APPS as APPS
from tests.integration.support.apps import app_env

APP = "kit_transport"


def transport_env(broker: str, state: str, **settings: str) -> dict[str, str]:
    """Worker environment with the transport's times shrunk: renewal every 1 s, so the
    derived visibility timeout is 4 s; restore checks every 0.5 s."""
    fixed = {
        "CELERY_KIT_BROKER__RENEWAL_INTERVAL_S": "1",
        "CELERY_KIT_BROKER__RESTORE_INTERVAL_S": "0.5",
        "CELERY_KIT_TASKS__SOFT_TIME_LIMIT_S": "100",
        "CELERY_KIT_TASKS__TIME_LIMIT_S": "120",
    }
    return app_env(broker, state, fixed, **settings)


def producer(env: dict[str, str]) -> Celery:
    """The test's own app, configured exactly like the worker's (no os.environ)."""
    return make_app(APP, settings=Settings(_environ=env))
