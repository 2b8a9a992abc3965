"""Configuration: defaults, sources, ``Settings`` and the Celery configuration built from it."""

from __future__ import annotations

from celery_kit.config.operations import (
    FlowerSettings,
    HealthSettings,
    LoggingSettings,
    MetricsSettings,
    TracingSettings,
)
from celery_kit.config.sections import (
    BrokerSettings,
    DlqSettings,
    IdempotencySettings,
    LocksSettings,
    RedisSettings,
    RetrySettings,
    SerializationSettings,
    TaskLimits,
    TasksSettings,
    WorkerSettings,
)
from celery_kit.config.settings import Settings

__all__ = [
    "BrokerSettings",
    "DlqSettings",
    "FlowerSettings",
    "HealthSettings",
    "IdempotencySettings",
    "LocksSettings",
    "LoggingSettings",
    "MetricsSettings",
    "RedisSettings",
    "RetrySettings",
    "SerializationSettings",
    "Settings",
    "TaskLimits",
    "TasksSettings",
    "TracingSettings",
    "WorkerSettings",
]
