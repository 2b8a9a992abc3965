"""Topology specs: the ``Priority`` scale, ``[queues]``, ``[routes]`` and their checks.

``Priority`` means the same on every broker (higher is more urgent). Queue specs become
kombu ``Queue`` declarations and Redis transport options here (values of the Celery
configuration, see :mod:`.celery_conf`); the broker-side translation of priorities is
:mod:`celery_kit.topology.priority`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from kombu import Queue
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from celery_kit.config.profiles import profile_problems

if TYPE_CHECKING:
    from celery_kit.config.settings import Settings

__all__ = [
    "DEFAULT_QUEUE_NAMES",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "REDIS_PRIORITY_OPTIONS",
    "Priority",
    "PriorityLevel",
    "QueueSpec",
    "RouteLike",
    "RouteSpec",
    "check_hook_path",
    "check_topology",
    "coerce_priority",
    "declared_queues",
    "default_queues",
    "kombu_queues",
    "redis_priority_options",
    "route_problems",
    "route_spec",
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
_HOOK_PATH = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")


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


class RouteSpec(BaseModel):
    """One ``[routes]`` value: ``"critical"`` or ``{ queue = "low", priority = "low" }``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str | None = None
    priority: PriorityLevel | None = None

    @model_validator(mode="before")
    @classmethod
    def _queue_name(cls, value: Any) -> Any:
        return {"queue": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> RouteSpec:
        if self.queue is None and self.priority is None:
            raise ValueError("a route needs a queue, a priority, or both")
        return self

    def as_route(self) -> dict[str, Any]:
        """The Celery route dict (only the keys that are set)."""
        route: dict[str, Any] = {}
        if self.queue is not None:
            route["queue"] = self.queue
        if self.priority is not None:
            route["priority"] = self.priority
        return route


#: What a route may be given as: ``"critical"``, ``{"queue": …}`` or a RouteSpec.
RouteLike = str | Mapping[str, Any] | RouteSpec


def route_spec(value: RouteLike) -> RouteSpec:
    """``value`` as a :class:`RouteSpec` (validated unless it is one already)."""
    return value if isinstance(value, RouteSpec) else RouteSpec.model_validate(value)


def check_hook_path(value: object) -> object:
    """Validate a ``routers`` entry: a callable, or ``"pkg.module:function"``."""
    if isinstance(value, str) and not _HOOK_PATH.match(value):
        raise ValueError(f"router {value!r} must be an import path like 'proj.routing:by_tier'")
    if not isinstance(value, str) and not callable(value):
        raise ValueError(f"router {value!r} is neither callable nor an import path")
    return value


def route_problems(routes: Mapping[str, RouteLike], queues: Mapping[str, QueueSpec]) -> list[str]:
    """Routes that name an undeclared queue or give a FIFO queue a priority."""
    problems = []
    for pattern, value in routes.items():
        spec = route_spec(value)
        if spec.queue is not None and spec.queue not in queues:
            problems.append(
                f'routes."{pattern}": queue {spec.queue!r} is not declared; declare it in'
                f" [queues] or route to one of: {', '.join(queues)}"
            )
        elif (
            spec.queue is not None
            and spec.priority is not None
            and not (queues[spec.queue].carries_priority)
        ):
            problems.append(
                f'routes."{pattern}": queue {spec.queue!r} carries no priorities'
                f" (priority = false); remove the route's priority or set"
                f" queues.{spec.queue}.priority = true"
            )
    return problems
