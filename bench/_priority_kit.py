"""bench.priority worker app built by the kit (topology from ``CELERY_KIT_CONFIG``)."""

from __future__ import annotations

from bench._priority_tasks import register
from celery_kit import make_app

app = make_app("bench_priority_kit")
register(app)
