"""The Django example's settings with an unsafe Celery setting the kit must refuse."""

from proj.settings import *  # noqa: F403

CELERY_TASK_SERIALIZER = "pickle"
