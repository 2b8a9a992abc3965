"""The kit's retry policy after a failed run: full-jitter backoff, or the dead-letter store."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from celery_kit.coordination.dead_letter import dead_letter_from
from celery_kit.coordination.dlq import DeadLetterStore

if TYPE_CHECKING:
    from celery_kit.config.settings import Settings
    from celery_kit.tasks.base import KitTask
    from celery_kit.tasks.options import Plan

__all__ = ["after_failure", "backoff_s", "max_retries"]


def backoff_s(
    task: KitTask, settings: Settings, retries: int, exc: BaseException | None = None
) -> float:
    """Delay before retry number ``retries`` (0-based): full jitter, capped (see
    ``RetryingTask``); a ``retry_after_s`` on ``exc`` is a lower bound within the cap."""
    caps = [settings.tasks.retry_backoff_max_s]
    if not settings.uses_delay_set:  # the worker holds the retry: keep it in the budget
        caps.append(settings.tasks.max_countdown_s)
    if task.backoff_max_s is not None:
        caps.append(task.backoff_max_s)
    cap = min(caps)
    base = task.backoff_base_s or settings.retry.backoff_base_s
    delay = random.uniform(0.0, min(cap, base * 2.0 ** min(retries, 60)))
    retry_after = getattr(exc, "retry_after_s", None)
    if isinstance(retry_after, (int, float)) and retry_after > 0:
        delay = max(delay, min(float(retry_after), cap))
    return delay


def max_retries(task: KitTask, settings: Settings) -> int:
    """The task's ``max_retries``, else ``retry.max_retries``."""
    return settings.retry.max_retries if task.max_retries is None else int(task.max_retries)


def after_failure(task: KitTask, plan: Plan, settings: Settings, exc: Exception) -> None:
    """Retry (raises ``Retry``) or dead-letter a failed run, per the task's policy."""
    request = task.request
    if plan.retry:
        permanent = isinstance(exc, task.permanent_for) or not isinstance(exc, task.retry_for)
        if not permanent:
            limit = max_retries(task, settings)
            if request.retries < limit:
                countdown = backoff_s(task, settings, request.retries, exc)
                raise task.retry(exc=exc, countdown=countdown, max_retries=limit)
        reason = "permanent" if permanent else "retries_exhausted"
    elif plan.dead_letter:
        reason = "permanent" if isinstance(exc, task.permanent_for) else "failed"
    else:
        return
    if task.dead_letter and settings.dlq.enabled and not request.is_eager:
        _dead_letter(task, exc, reason)


def _dead_letter(task: KitTask, exc: BaseException, reason: str) -> None:
    request = task.request
    request.kit_dead_letter = reason  # type: ignore[attr-defined]  # observability/tracing.py
    entry = dead_letter_from(
        exc,
        task_id=str(request.id),
        task_name=task.name,
        args=request.args,
        kwargs=request.kwargs,
        delivery_info=request.delivery_info,
        headers=request.headers,
        reason=reason,
        attempts=int(request.retries or 0) + 1,
        # in the pool process the routing prerun hook already restored the kit's value
        priority=(request.delivery_info or {}).get("priority"),
        hostname=request.hostname,
        eta=request.eta,
    )
    DeadLetterStore(task.app).add_or_log(entry)
