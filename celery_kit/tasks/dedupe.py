"""Enqueue-time de-duplication of idempotency keys (``dedupe_enqueue``)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from celery_kit.coordination.client import kit_redis
from celery_kit.coordination.idempotency import reserve, unreserve
from celery_kit.state import settings_of
from celery_kit.tasks.guards import bound_arguments, render_key

if TYPE_CHECKING:
    from celery_kit.tasks.base import KitTask
    from celery_kit.tasks.options import Plan

__all__ = ["reserve_publish"]

logger = logging.getLogger(__name__)


def reserve_publish(
    task: KitTask, plan: Plan, args: Any, kwargs: Any, task_id: str | None
) -> tuple[str | None, str | None, Callable[[], None]]:
    """Enqueue-time de-duplication for ``apply_async``.

    Returns:
        ``(task_id to publish, id of an already pending/running task or None, undo)``;
        ``undo`` drops the reservation if the publish then fails. Redis unreachable:
        logged, and the task is published without de-duplication (the claim at run time
        still keeps the body to one run).
    """

    def nothing() -> None:
        return None

    if plan.idempotency is None or task.app.conf.task_always_eager:
        return task_id, None, nothing
    if task_id is not None and task_id == task.request.id:
        return task_id, None, nothing  # a retry or deferral of the running task
    task_id = task_id or str(uuid.uuid4())
    bound = bound_arguments(task, args, kwargs) if plan.needs_arguments else {}
    try:
        kr = kit_redis(task.app)
        key = kr.keys.idempotency(
            task.name, render_key(task, plan.idempotency, bound, args, kwargs)
        )
        ttl = settings_of(task.app).idempotency.pending_ttl_s
        existing = reserve(kr, key, task_id=task_id, pending_ttl_s=ttl)
    except redis.RedisError as exc:
        logger.warning("celery_kit: %s: enqueue de-duplication skipped (%s)", task.name, exc)
        return task_id, None, nothing
    if existing is not None:
        return task_id, existing, nothing

    def undo() -> None:
        try:
            unreserve(kr, key, task_id=str(task_id))
        except redis.RedisError:
            logger.warning("celery_kit: could not drop the reservation of %s", key)

    return task_id, None, undo
