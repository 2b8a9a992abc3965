"""Kit priority ⇄ broker priority: the publish side and the worker side of one translation.

Redis (kombu ``priority_steps`` 0-9) reads its lists most-urgent-last, RabbitMQ spreads
``0..x-max-priority``; :class:`PriorityMap` knows both. The publish wrapper
(:mod:`.publish`) translates every outgoing message; :func:`kit_priority_in_request`
puts the kit value back into a running task's request, and :func:`delivered_priority`
reads it from a delivery (dead letters, poison messages).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery_kit.config.topology import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    Priority,
    coerce_priority,
    declared_queues,
)
from celery_kit.exceptions import PublishError
from celery_kit.state import find_state, settings_of

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.config.settings import Settings

__all__ = [
    "InvalidPriorityError",
    "PriorityMap",
    "delivered_priority",
    "kit_priority_in_request",
    "priority_map",
    "show_kit_priority",
]

logger = logging.getLogger(__name__)

#: Request attribute: the delivered priority is already in the kit's terms.
_SHOWN = "kit_priority_shown"


class InvalidPriorityError(PublishError, ValueError):
    """A message was published with a priority outside the kit's 0-9 scale."""


@dataclass(frozen=True)
class _QueueScale:
    carries: bool
    default: int
    max_priority: int


@dataclass(frozen=True)
class PriorityMap:
    """Kit priority ⇄ broker priority for each declared queue.

    Redis (kombu ``priority_steps`` 0-9): broker value = 9 - kit value, so the kit's most
    urgent level lands in the list BRPOP reads first. RabbitMQ: kit 0-9 spread over the
    queue's ``0..x-max-priority`` (identity for the default 9). Queues without priorities
    get one fixed value (Redis: the default level's list; RabbitMQ: none), so they stay FIFO.
    """

    redis: bool
    default_queue: str
    scales: Mapping[str, _QueueScale] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, *, default_queue: str) -> PriorityMap:
        """The map for ``settings``' declared queues."""
        scales = {
            name: _QueueScale(spec.carries_priority, spec.default_priority, spec.max_priority)
            for name, spec in declared_queues(settings, default_queue).items()
        }
        return cls(settings.is_redis_broker, default_queue, scales)

    def _scale(self, queue: str | None) -> _QueueScale:
        found = self.scales.get(queue or self.default_queue)
        return found or _QueueScale(True, Priority.NORMAL, MAX_PRIORITY)

    def to_broker(self, queue: str | None, priority: object) -> int | None:
        """The broker value for kit ``priority`` (``None``: the queue's default) on ``queue``.

        Raises:
            InvalidPriorityError: ``priority`` is not on the kit's 0-9 scale.
        """
        scale = self._scale(queue)
        if priority is None or not scale.carries:
            level = scale.default
        else:
            try:
                level = coerce_priority(priority)
            except ValueError as exc:
                raise InvalidPriorityError(f"queue {queue!r}: {exc}") from None
        if self.redis:
            return MAX_PRIORITY - level
        if not scale.carries:
            return None
        return (level * scale.max_priority + MAX_PRIORITY // 2) // MAX_PRIORITY

    def to_kit(self, queue: str | None, priority: int | None) -> int | None:
        """The kit value of broker ``priority`` as delivered from ``queue``."""
        if priority is None:
            return None
        scale = self._scale(queue)
        if self.redis:
            return min(MAX_PRIORITY, max(MIN_PRIORITY, MAX_PRIORITY - int(priority)))
        broker = min(int(priority), scale.max_priority)
        return (broker * MAX_PRIORITY + scale.max_priority // 2) // scale.max_priority


def priority_map(app: Celery) -> PriorityMap:
    """The app's :class:`PriorityMap`, built once from its settings and default queue."""
    state = find_state(app)
    found = state.get(PriorityMap) if state is not None else None
    if found is None:
        found = PriorityMap.from_settings(
            settings_of(app), default_queue=str(app.conf.task_default_queue)
        )
        if state is not None:
            state.put(found)
    return found


def delivered_priority(app: Celery, delivery_info: Mapping[str, Any] | None) -> int | None:
    """The kit priority of a message as the broker delivered it (``None`` if unknown).

    ``delivery_info["priority"]`` holds the broker's value (on Redis, 9 - the kit's).
    Anything that re-publishes a delivered message (retry, dead-letter replay) must
    re-publish this value, or the kit translates the broker value a second time.
    """
    info = delivery_info or {}
    if find_state(app) is None or info.get("priority") is None:
        return None
    table = priority_map(app)
    queue = info.get("routing_key") if not info.get("exchange") else None
    return table.to_kit(queue, int(info["priority"]))


def kit_priority_in_request(sender: Any = None, task: Any = None, **_: Any) -> None:
    """``task_prerun`` receiver: show the task the kit priority it was sent with.

    A worker reads the broker's value into ``request.delivery_info["priority"]``, and
    ``Task.retry`` republishes with that value (``signature_from_request``), which the
    kit would translate a second time. Putting the kit value back prevents that.
    """
    request = task.request
    info = request.delivery_info
    if info and info.get("priority") is not None and not info.get("is_eager"):
        show_kit_priority(task.app, request, info)


def show_kit_priority(app: Celery, request: Any, info: Mapping[str, Any]) -> None:
    """Replace the broker priority in ``request.delivery_info`` by the kit's (never raises).

    Called for a delivered (not eager) request whose ``info["priority"]`` is set: by
    ``KitTask.__call__``, or by :func:`kit_priority_in_request` for other task classes.
    """
    if getattr(request, _SHOWN, False):  # translated once per request, whoever came first
        return
    try:
        if (kit := delivered_priority(app, info)) is not None:
            request.delivery_info = {**info, "priority": kit}
        setattr(request, _SHOWN, True)
    except Exception:  # an observer must never break a task
        logger.exception("celery_kit: could not translate the delivered priority")
