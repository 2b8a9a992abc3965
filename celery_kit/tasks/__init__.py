"""Tasks: ``KitTask``/``RetryingTask``, their options and guards, poison messages, progress."""

from __future__ import annotations

from celery_kit.tasks.base import KitTask, RetryingTask
from celery_kit.tasks.errors import (
    PermanentError,
    PermanentHTTPError,
    TransientError,
    TransientHTTPError,
    http_error,
    is_transient_status,
)

__all__ = [
    "KitTask",
    "PermanentError",
    "PermanentHTTPError",
    "RetryingTask",
    "TransientError",
    "TransientHTTPError",
    "http_error",
    "is_transient_status",
]
