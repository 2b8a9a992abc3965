"""The project's Celery app: CELERY_* Django settings over the kit's safe defaults."""

from __future__ import annotations

import os

from celery_kit import make_app

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = make_app("proj", framework="django")
app.autodiscover_tasks()  # finds orders/tasks.py through INSTALLED_APPS
