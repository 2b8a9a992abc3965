"""Queues and priorities: ``Priority`` means the same on every broker (higher is more urgent).

Queue specs become kombu ``Queue`` declarations and Redis transport options here, and
:class:`PriorityMap` translates kit priorities to what the broker in use expects.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from celery_kit.exceptions import PublishError

if TYPE_CHECKING:
    from celery import Celery
    from kombu import Queue

    from celery_kit.config import Settings

__all__ = [
    "DEFAULT_QUEUE_NAMES",
    "REDIS_PRIORITY_OPTIONS",
    "InvalidPriorityError",
    "Priority",
    "PriorityLevel",
    "PriorityMap",
    "QueueSpec",
    "check_topology",
    "coerce_priority",
    "default_queues",
    "delivered_priority",
    "kombu_queues",
    "redis_priority_options",
]


class Priority(enum.IntEnum):
    """Kit priority: 0-9, **higher is more urgent on every broker**.

    Any int 0-9 means the same; the names are the levels most code needs. The kit
    translates to the broker's scale when the message is published (Redis: 0 is the
    most urgent list; RabbitMQ: ``x-max-priority`` scale).
    """

    LOWEST = 0
    LOW = 3
    NORMAL = 5
    HIGH = 7
    HIGHEST = 9


#: Bounds of the kit scale (ten levels, like Celery's documented 0-9 range).
MIN_PRIORITY, MAX_PRIORITY = 0, 9
_NAMES = {level.name.lower(): level for level in Priority}
_HINT = "0-9 (higher = more urgent) or one of " + ", ".join(_NAMES)


class InvalidPriorityError(PublishError, ValueError):
    """A message was published with a priority outside the kit's 0-9 scale."""


def coerce_priority(value: object) -> int:
    """Return ``value`` as a kit priority (int 0-9); accepts ``Priority``, ints and names.

    Raises:
        ValueError: the value is not on the kit scale (the message lists what is).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if MIN_PRIORITY <= value <= MAX_PRIORITY:
            return int(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in _NAMES:
            return int(_NAMES[text])
        if text.isdigit() and MIN_PRIORITY <= int(text) <= MAX_PRIORITY:
            return int(text)
    raise ValueError(f"priority must be {_HINT}; got {value!r}")


#: A priority in settings: ``7``, ``"high"`` or ``Priority.HIGH``, stored as an int.
PriorityLevel = Annotated[int, BeforeValidator(coerce_priority)]

#: The kit's default topology, in consumption order (most urgent first).
DEFAULT_QUEUE_NAMES = ("critical", "high", "default", "low", "bulk")

#: kombu Redis transport options that make priorities real (kombu/transport/redis.py):
#: one list per level (``q``, ``q:1`` … ``q:9``; kombu's default is 4 levels 0/3/6/9),
#: a readable separator instead of ``\x06\x16``, and BRPOP keys in ``-Q`` order instead
#: of round robin (Celery docs, "Redis Message Priorities").
REDIS_PRIORITY_OPTIONS: Mapping[str, Any] = {
    "priority_steps": list(range(MIN_PRIORITY, MAX_PRIORITY + 1)),
    "sep": ":",
    "queue_order_strategy": "priority",
}
#: Queue arguments the kit manages from ``QueueSpec`` fields (RabbitMQ).
_MANAGED_ARGUMENTS = {"x-max-priority": "max_priority", "x-queue-type": "queue_type"}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class QueueSpec(BaseModel):
    """One queue of ``[queues]``: ``critical = { max_priority = 9 }``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Order messages by priority. ``None``: yes, except on quorum queues.
    priority: bool | None = None
    #: Priority of messages published without one (not the top slot).
    default_priority: PriorityLevel = Priority.NORMAL
    #: RabbitMQ ``x-max-priority``; kit levels 0-9 are spread over 0..max_priority.
    max_priority: int = Field(default=MAX_PRIORITY, ge=1, le=255)
    #: RabbitMQ queue type (quorum queues cannot order by kit priority).
    queue_type: Literal["classic", "quorum"] = "classic"
    #: Extra queue arguments, e.g. ``{"x-message-ttl" = 60000}`` (RabbitMQ), ``x-expires``.
    arguments: dict[str, Any] = Field(default_factory=dict)

    @property
    def carries_priority(self) -> bool:
        """Whether messages on this queue are ordered by priority."""
        return self.priority if self.priority is not None else self.queue_type == "classic"

    @model_validator(mode="after")
    def _check(self) -> QueueSpec:
        if self.queue_type == "quorum" and self.priority:
            raise ValueError(
                "a quorum queue cannot carry kit priorities (RabbitMQ ignores x-max-priority"
                " on quorum queues; 4.x only knows normal/high): set priority = false, or"
                ' queue_type = "classic"'
            )
        for arg, setting in _MANAGED_ARGUMENTS.items():
            if arg in self.arguments:
                raise ValueError(f"set `{setting}` instead of the {arg!r} queue argument")
        return self


def default_queues() -> dict[str, QueueSpec]:
    """The default topology: ``bulk`` is FIFO, the others carry priorities."""
    return {
        name: QueueSpec(priority=False) if name == "bulk" else QueueSpec()
        for name in DEFAULT_QUEUE_NAMES
    }


def declared_queues(settings: Settings, default_queue: str) -> dict[str, QueueSpec]:
    """``settings.queues`` plus the default queue (declared with defaults if not listed)."""
    queues = dict(settings.queues)
    queues.setdefault(default_queue, QueueSpec())
    return queues


def kombu_queues(queues: Mapping[str, QueueSpec], *, amqp: bool) -> list[Queue]:
    """kombu ``Queue`` declarations for ``queues`` (RabbitMQ arguments when ``amqp``)."""
    from kombu import Queue

    out = []
    for name, spec in queues.items():
        arguments = dict(spec.arguments)
        if amqp and spec.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
        if amqp and spec.carries_priority:
            arguments["x-max-priority"] = spec.max_priority
        out.append(Queue(name, routing_key=name, queue_arguments=arguments or None))
    return out


def redis_priority_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` transport options with the kit's priority options filled in under them.

    The user's own ``sep``/``queue_order_strategy`` win (an existing deployment may need
    its old ``sep``); ``priority_steps`` must stay 0-9, which :func:`check_topology` checks.
    """
    return {**REDIS_PRIORITY_OPTIONS, **given}


def check_topology(
    settings: Settings, *, default_queue: str, transport_options: Mapping[str, Any]
) -> list[str]:
    """Cross-field problems of queues, routes and worker profiles (empty when sound)."""
    from celery_kit.routing import route_problems
    from celery_kit.workers import profile_problems

    problems = []
    queues = declared_queues(settings, default_queue)
    sep = str(transport_options.get("sep", REDIS_PRIORITY_OPTIONS["sep"]))
    for name in queues:
        if not _NAME.match(name) or (settings.is_redis_broker and sep in name):
            problems.append(
                f"queue name {name!r}: use letters, digits, '_', '.' and '-' only (on Redis"
                f" the kit stores priority levels as {name}{sep}1 … {name}{sep}9)"
            )
    steps = transport_options.get("priority_steps")
    if settings.is_redis_broker and list(steps or ()) != REDIS_PRIORITY_OPTIONS["priority_steps"]:
        problems.append(
            f"broker transport option priority_steps = {steps!r}: the kit needs"
            " list(range(10)) for its 0-9 priorities; remove it from"
            " broker.transport_options / celery_overrides"
        )
    problems += route_problems(settings.routes, queues)
    problems += profile_problems(settings.workers, queues)
    return problems


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

    def wrap_sender(self, send: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap Celery's ``send_task_message`` so every message gets its broker priority.

        Celery merges per-call options, task attributes and the router's answer into the
        keyword ``priority`` before this point (``celery/app/base.py: send_task``), so
        this is the one place that sees the final value for every publishing API.
        """

        def send_task_message(
            producer: Any,
            name: str,
            message: Any,
            exchange: Any = None,
            routing_key: str | None = None,
            queue: Any = None,
            **options: Any,
        ) -> Any:
            qname = queue if isinstance(queue, str) else getattr(queue, "name", None)
            if qname is None and exchange is None:
                qname = self.default_queue
            broker = self.to_broker(qname or routing_key, options.get("priority"))
            if broker is None:
                options.pop("priority", None)
            else:
                options["priority"] = broker
            return send(producer, name, message, exchange, routing_key, queue, **options)

        return send_task_message


def delivered_priority(app: Celery, delivery_info: Mapping[str, Any] | None) -> int | None:
    """The kit priority of a message as the broker delivered it (``None`` if unknown).

    ``delivery_info["priority"]`` holds the broker's value (on Redis, 9 - the kit's).
    Anything that re-publishes a delivered message (retry, dead-letter replay) must
    re-publish this value, or the kit translates the broker value a second time.
    """
    table: PriorityMap | None = getattr(app.amqp, "kit_priorities", None)
    info = delivery_info or {}
    if table is None or info.get("priority") is None:
        return None
    queue = info.get("routing_key") if not info.get("exchange") else None
    return table.to_kit(queue, int(info["priority"]))
