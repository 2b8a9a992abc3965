"""The kit's Redis transport (atomic consume, renewal of held messages, prompt restore)."""

from __future__ import annotations

from celery_kit.config.defaults import KIT_TRANSPORT

__all__ = ["KIT_TRANSPORT"]
