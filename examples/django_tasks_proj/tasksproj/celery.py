"""The kit app the Django Tasks backend publishes through and the worker runs.

``celery -A tasksproj worker`` imports this module; ``autodiscover_tasks`` imports
``reports/tasks.py``, whose ``@task`` functions register their Celery tasks on this app.
"""

from __future__ import annotations

import os

from celery_kit import make_app

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tasksproj.settings")

app = make_app("tasksproj", framework="django")
app.autodiscover_tasks()
