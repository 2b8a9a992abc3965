"""``celery-kit doctor``: audit any Celery app (settings, tasks, live broker) by rules."""
