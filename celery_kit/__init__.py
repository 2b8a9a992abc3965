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
    "PublishError",
    "Settings",
    "__version__",
    "make_app",
    "settings_of",
]

_LAZY = {
    "make_app": "celery_kit.app",
    "settings_of": "celery_kit.app",
    "Settings": "celery_kit.config",
    "CeleryKitError": "celery_kit.exceptions",
    "ConfigError": "celery_kit.exceptions",
    "CountdownTooLongError": "celery_kit.exceptions",
    "PublishError": "celery_kit.exceptions",
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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'celery_kit' has no attribute {name!r}")
