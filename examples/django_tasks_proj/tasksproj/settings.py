"""Settings of the Django Tasks example: SQLite and Redis locations come from the environment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
INSTALLED_APPS = ["reports"]
MIDDLEWARE: list[str] = []
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "DJANGO_DB_PATH", str(Path(tempfile.gettempdir()) / "celery-kit-tasks.sqlite3")
        ),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
# Short limits so a stuck example task does not hold a worker for long.
CELERY_KIT = {"tasks": {"soft_time_limit_s": 20, "time_limit_s": 30}}

# Django Tasks through the kit: tasks run on kit workers, results come from the kit's
# result backend (the broker's Redis unless result_backend is set).
TASKS = {
    "default": {
        "BACKEND": "celery_kit.integrations.django_tasks.CeleryKitBackend",
        "OPTIONS": {
            "APP": "tasksproj.celery:app",
            # kit task options for tasks Django's decorator cannot pass them to (6.0)
            "TASK_OPTIONS": {"reports.tasks.once": {"idempotency_key": "once:{key}"}},
        },
    }
}
