"""celery_kit: Celery with safe defaults and one typed, validated configuration.

``from celery_kit import make_app`` is the entry point. Importing the package is cheap:
names are loaded on first use, so ``celery`` plug-in discovery stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "CeleryKitError",
    "ConfigError",
    "CountdownTooLongError",
    "KitTask",
    "Lock",
    "PermanentError",
    "Priority",
    "PublishError",
    "RateLimiter",
    "RetryingTask",
    "Settings",
    "TransientError",
    "__version__",
    "make_app",
    "progress",
    "settings_of",
    "task_status",
    "task_statuses",
]

_LAZY = {
    "make_app": "celery_kit.app",
    "settings_of": "celery_kit.app",
    "Settings": "celery_kit.config",
    "CeleryKitError": "celery_kit.exceptions",
    "ConfigError": "celery_kit.exceptions",
    "CountdownTooLongError": "celery_kit.exceptions",
    "PublishError": "celery_kit.exceptions",
    "Priority": "celery_kit.queues",
    "KitTask": "celery_kit.tasks",
    "RetryingTask": "celery_kit.tasks",
    "PermanentError": "celery_kit.tasks",
    "TransientError": "celery_kit.tasks",
    "Lock": "celery_kit.locks",
    "RateLimiter": "celery_kit.ratelimit",
    "progress": "celery_kit.progress",
    "task_status": "celery_kit.progress",
    "task_statuses": "celery_kit.progress",
}

if TYPE_CHECKING:
    from celery_kit.app import make_app, settings_of
    from celery_kit.config import Settings
    from celery_kit.exceptions import (
        CeleryKitError,
        ConfigError,
        CountdownTooLongError,
        PublishError,
    )
    from celery_kit.locks import Lock
    from celery_kit.progress import progress, task_status, task_statuses
    from celery_kit.queues import Priority
    from celery_kit.ratelimit import RateLimiter
    from celery_kit.tasks import KitTask, PermanentError, RetryingTask, TransientError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'celery_kit' has no attribute {name!r}")
