"""Start-up refusals about tasks: time limits above the redelivery budget, options without Redis.

Task attributes (``@app.task(time_limit=…, lock=…)``) are only known once task modules are
imported, so the worker runs these in its start-up bootstep (``celery_kit.build``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery_kit.config.celery_conf import redelivery_budget
from celery_kit.coordination.client import redis_url
from celery_kit.exceptions import ConfigError
from celery_kit.state import settings_of

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["check_redis_options", "check_tasks"]


def check_tasks(app: Celery) -> None:
    """Refuse tasks whose own ``time_limit`` exceeds the redelivery budget.

    Raises:
        ConfigError: a task's limit is above the budget, or its soft limit above its hard.
    """
    settings = settings_of(app)
    budget = redelivery_budget(settings)
    allowed = budget.max_time_limit_s
    app.finalize(auto=True)
    for task in app.tasks.values():
        limit = getattr(task, "time_limit", None)
        soft = getattr(task, "soft_time_limit", None)
        if limit is not None and float(limit) > allowed:
            raise ConfigError(
                f"task {task.name!r} sets time_limit={limit} but the broker's redelivery"
                f" budget was derived for at most {allowed:g} s ({budget.explain()}). Set"
                f' tasks.limits."{task.name}".time_limit_s = {limit} in the config instead,'
                " so the visibility timeout is derived from it."
            )
        if soft is not None and limit is not None and float(soft) >= float(limit):
            raise ConfigError(
                f"task {task.name!r}: soft_time_limit={soft} must be below time_limit={limit}"
            )


def check_redis_options(app: Celery) -> None:
    """A task with a Redis-backed kit option needs a Redis.

    Raises:
        ConfigError: such a task exists but no Redis is configured (names the setting).
    """
    app.finalize(auto=True)
    if any(getattr(type(t), "_kit_plan", None) is not None for t in app.tasks.values()):
        redis_url(settings_of(app))
