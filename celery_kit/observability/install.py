"""Observability in one call from ``make_app``: metrics, heartbeat, traces, task logs.

Progress needs no installation (:mod:`celery_kit.tasks.progress` uses the result backend).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery_kit.observability.beat import install_skip_counter
from celery_kit.observability.heartbeat import install_health
from celery_kit.observability.hooks import install_metrics
from celery_kit.observability.metrics import metrics_of
from celery_kit.observability.tasklog import install_task_logging
from celery_kit.observability.tracing import install_tracing
from celery_kit.topology.delays import move_hooks

if TYPE_CHECKING:
    from celery import Celery
    from prometheus_client import CollectorRegistry

    from celery_kit.config.settings import Settings

__all__ = ["install_observability"]


def install_observability(
    app: Celery, settings: Settings, *, registry: CollectorRegistry | None = None
) -> None:
    """Install metrics, the heartbeat, tracing and task logging as configured.

    Args:
        app: a ``make_app`` app.
        settings: its settings.
        registry: registry for producer-side metrics (a private one if omitted).
    """
    install_metrics(app, settings, registry=registry)
    install_skip_counter(app, settings)
    install_health(app, settings)
    install_tracing(app, settings)
    install_task_logging(app, settings)
    if settings.metrics.enabled and settings.uses_delay_set:
        move_hooks(app).append(_LagMetric(app))


class _LagMetric:
    """Observes each moved message's lateness in ``<prefix>_delay_lag_seconds``."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def __call__(self, lags: list[float]) -> None:
        m = metrics_of(self.app)
        hist = m.child(m.delay_lag) if m._static else m.delay_lag
        for lag in lags:
            hist.observe(max(lag, 0.0))
