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
    "settings_of": "celery_kit.state",
    "Settings": "celery_kit.config.settings",
    "CeleryKitError": "celery_kit.exceptions",
    "ConfigError": "celery_kit.exceptions",
    "CountdownTooLongError": "celery_kit.exceptions",
    "PublishError": "celery_kit.exceptions",
    "Priority": "celery_kit.config.topology",
    "KitTask": "celery_kit.tasks.base",
    "RetryingTask": "celery_kit.tasks.base",
    "PermanentError": "celery_kit.tasks.errors",
    "TransientError": "celery_kit.tasks.errors",
    "Lock": "celery_kit.coordination.locks",
    "RateLimiter": "celery_kit.coordination.ratelimit",
    "progress": "celery_kit.tasks.progress",
    "task_status": "celery_kit.tasks.progress",
    "task_statuses": "celery_kit.tasks.progress",
}

if TYPE_CHECKING:
    from celery_kit.app import make_app
    from celery_kit.config.settings import Settings
    from celery_kit.config.topology import Priority
    from celery_kit.coordination.locks import Lock
    from celery_kit.coordination.ratelimit import RateLimiter
    from celery_kit.exceptions import (
        CeleryKitError,
        ConfigError,
        CountdownTooLongError,
        PublishError,
    )
    from celery_kit.state import settings_of
    from celery_kit.tasks.base import KitTask, RetryingTask
    from celery_kit.tasks.errors import PermanentError, TransientError
    from celery_kit.tasks.progress import progress, task_status, task_statuses


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'celery_kit' has no attribute {name!r}")
