"""Settings of the example project: SQLite and Redis locations come from the environment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
INSTALLED_APPS = ["orders"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "proj.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "DJANGO_DB_PATH", str(Path(tempfile.gettempdir()) / "celery-kit-example.sqlite3")
        ),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"  # Celery's timezone too, unless CELERY_TIMEZONE is set

# Celery settings use Celery's Django namespace: CELERY_<UPPERCASE NAME>. They win over the
# kit's defaults and pass the same checks (CELERY_TASK_SERIALIZER = "pickle" is refused).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_EXPIRES = 3600  # the kit's default keeps results for a day

# Kit settings without a Celery name, shaped like celery_kit.Settings (configs/default.toml).
CELERY_KIT = {"tasks": {"soft_time_limit_s": 50, "time_limit_s": 60}}
