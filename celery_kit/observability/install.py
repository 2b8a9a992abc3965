"""Observability in one call from ``make_app``: task metrics and the worker heartbeat.

Progress needs no installation (:mod:`celery_kit.tasks.progress` uses the result backend).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery_kit.observability.beat import install_skip_counter
from celery_kit.observability.heartbeat import install_health
from celery_kit.observability.hooks import install_metrics

if TYPE_CHECKING:
    from celery import Celery
    from prometheus_client import CollectorRegistry

    from celery_kit.config.settings import Settings

__all__ = ["install_observability"]


def install_observability(
    app: Celery, settings: Settings, *, registry: CollectorRegistry | None = None
) -> None:
    """Install metrics (``[metrics]``) and the heartbeat (``[health]``) as configured.

    Args:
        app: a ``make_app`` app.
        settings: its settings.
        registry: registry for producer-side metrics (a private one if omitted).
    """
    install_metrics(app, settings, registry=registry)
    install_skip_counter(app, settings)
    install_health(app, settings)
