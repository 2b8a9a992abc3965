"""``django.tasks`` tasks; ``celery -A tasksproj worker`` runs them."""

from __future__ import annotations

import time
from typing import Any

import django
from django.tasks import TaskContext, task


@task
def add(a: int, b: int) -> int:
    """Return ``a + b``."""
    return a + b


@task
def fail(message: str) -> None:
    """Always fail with ``message``."""
    raise ValueError(message)


@task
def stamp(label: str) -> dict[str, Any]:
    """Return when (epoch seconds) the worker ran this call."""
    return {"label": label, "ran_at": time.time()}


@task(takes_context=True)
def attempt(context: TaskContext) -> dict[str, Any]:
    """Return the attempt counter and id Django's context carries."""
    return {"attempt": context.attempt, "id": context.task_result.id}


@task
async def double(x: int) -> int:
    """A coroutine task: the worker runs it through ``async_to_sync``."""
    return 2 * x


@task(takes_context=True)
def slow_first_attempt(context: TaskContext, sleep_s: float) -> int:
    """Sleep on the first attempt only (long enough to be killed); return the attempt."""
    if context.attempt == 1:
        time.sleep(sleep_s)
    return int(context.attempt)


@task
def once(key: str) -> float:
    """Idempotent by ``key`` (``TASK_OPTIONS`` in settings): a repeat returns the first result."""
    return time.time()


if django.VERSION >= (6, 1):  # extra @task(...) keywords reach the backend from 6.1 on
    from reports.tasks_61 import locked_once  # noqa: F401
