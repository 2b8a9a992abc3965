"""Start-up refusals about tasks: limits that break the redelivery budget, options without Redis.

Task attributes (``@app.task(time_limit=…, lock=…)``) are only known once task modules are
imported, so the worker runs these in its start-up bootstep (``celery_kit.build``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery_kit.config.celery_conf import build_conf, redelivery_budget
from celery_kit.config.rules import Subject, TaskInfo, evaluate
from celery_kit.config.rules.celery_view import kit_subject, task_info
from celery_kit.coordination.client import redis_url
from celery_kit.exceptions import ConfigError
from celery_kit.state import settings_of

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.config.settings import Settings

__all__ = ["STARTUP_REFUSALS", "check_redis_options", "check_tasks", "kit_subject_of"]


#: The rules a worker refuses to start on (celery_kit.config.rules; ``kit check`` runs all).
STARTUP_REFUSALS = (
    "time-limit-beyond-redelivery-window",
    "soft-limit-not-below-hard",
    "beat-task-not-registered",
)


def check_tasks(app: Celery) -> None:
    """Refuse tasks whose own limits break the redelivery budget or the soft < hard rule.

    The checks are rules of :mod:`celery_kit.config.rules`, the engine ``kit check`` and
    ``celery-kit doctor`` use; every offending task is reported, not only the first.

    Raises:
        ConfigError: a task's limit is above the budget, or its soft limit above its hard.
    """
    settings = settings_of(app)
    app.finalize(auto=True)
    tasks = tuple(task_info(t) for n, t in sorted(app.tasks.items()) if not n.startswith("celery."))
    findings = [
        f
        for f in evaluate(kit_subject_of(settings, tasks=tasks), only=STARTUP_REFUSALS)
        if f.task is not None
    ]
    if findings:
        raise ConfigError(
            "tasks break the configuration:\n  - "
            + "\n  - ".join(f"{f.message} [{f.rule.id}]" for f in findings)
        )


def kit_subject_of(settings: Settings, *, tasks: tuple[TaskInfo, ...] | None = None) -> Subject:
    """The rule engine's view of a kit configuration (its origins, its derived budget)."""
    entries = build_conf(settings)
    budget = redelivery_budget(settings, entries)
    timeout = None
    if settings.is_amqp_broker:
        where = settings.origin_of("broker.consumer_timeout_s") or "kit default"
        timeout = (settings.broker.consumer_timeout_s, f"`broker.consumer_timeout_s` ({where})")
    return kit_subject(
        entries,
        max_prefetch=budget.prefetch_multiplier,
        extra_unacked_s=budget.max_delay_s + budget.margin_s,
        consumer_timeout=timeout,
        tasks=tasks,
    )


def check_redis_options(app: Celery) -> None:
    """A task with a Redis-backed kit option needs a Redis.

    Raises:
        ConfigError: such a task exists but no Redis is configured (names the setting).
    """
    app.finalize(auto=True)
    if any(getattr(type(t), "_kit_plan", None) is not None for t in app.tasks.values()):
        redis_url(settings_of(app))
