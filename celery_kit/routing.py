"""The kit's Celery router: ``[routes]`` globs, task attributes and business-rule hooks.

Precedence, highest first: per-call options (``apply_async(queue=…, priority=…)``), task
attributes (``@app.task(queue=…, priority=…)``), hooks (``routers = [...]``), the first
matching ``[routes]`` entry (exact names before globs), ``tasks.default_queue``.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celery import bootsteps
from pydantic import BaseModel, ConfigDict, model_validator

from celery_kit.exceptions import ConfigError
from celery_kit.queues import PriorityLevel, QueueSpec, coerce_priority, delivered_priority

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.config import Settings

__all__ = [
    "KitRouter",
    "RouteSpec",
    "TopologyChecks",
    "check_task_routing",
    "install_topology",
    "route_problems",
]

logger = logging.getLogger(__name__)

#: A hook is any Celery router: ``(name, args, kwargs, options, task=None, **kw)``
#: returning a queue name, ``{"queue": …, "priority": …}`` (either key) or ``None``.
Hook = Callable[..., Any]
#: Task names whose glob match is remembered (task names are a small, fixed set).
_MATCH_CACHE_SIZE = 4096
_HOOK_PATH = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")


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


def _spec(value: RouteLike) -> RouteSpec:
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
        spec = _spec(value)
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


class KitRouter:
    """A Celery router (``task_routes`` entry) built from ``[routes]`` and ``routers``.

    Args:
        routes: task name or glob → queue name or :class:`RouteSpec`, in match order.
        hooks: Celery routers (callables or import paths, imported on first use) whose
            answers are merged over the glob's; the first one that answers wins.

    Priorities in answers are kit priorities (higher = more urgent); the app's AMQP
    class translates them for the broker when the message is published.
    """

    def __init__(
        self, routes: Mapping[str, RouteLike], *, hooks: Sequence[str | Hook] = ()
    ) -> None:
        self._exact: dict[str, dict[str, Any]] = {}
        self._globs: list[tuple[re.Pattern[str], dict[str, Any]]] = []
        for pattern, value in routes.items():
            route = _spec(value).as_route()
            if any(ch in pattern for ch in "*?["):
                self._globs.append((re.compile(fnmatch.translate(pattern)), route))
            else:
                self._exact[pattern] = route
        self._hook_specs = tuple(hooks)
        self._hooks: tuple[Hook, ...] | None = None
        self.match = functools.lru_cache(maxsize=_MATCH_CACHE_SIZE)(self._match)

    def _match(self, name: str) -> dict[str, Any]:
        if name in self._exact:
            return self._exact[name]
        for regex, route in self._globs:
            if regex.match(name):
                return route
        return {}

    @property
    def hooks(self) -> tuple[Hook, ...]:
        """The hook callables (import paths resolved on first use)."""
        if self._hooks is None:
            from celery.utils.imports import symbol_by_name

            self._hooks = tuple(
                symbol_by_name(h) if isinstance(h, str) else h for h in self._hook_specs
            )
        return self._hooks

    def __call__(
        self,
        name: str,
        args: Any = None,
        kwargs: Any = None,
        options: Any = None,
        task: Any = None,
        **kw: Any,
    ) -> dict[str, Any] | None:
        """Celery's router protocol: the route for task ``name``, or ``None``."""
        route = dict(self.match(name))
        for hook in self.hooks:
            answer = hook(name, args, kwargs, options, task=task, **kw)
            if answer:
                route.update({"queue": answer} if isinstance(answer, str) else answer)
                break
        # Celery 5.7 also applies these through the options (which beat any router), and
        # warns they leave in 6.0; reading them here keeps them working either way.
        for attr in ("queue", "priority"):
            value = getattr(task, attr, None) if task is not None else None
            if value is not None:
                route[attr] = value
        return route or None

    def _key(self) -> tuple[Any, ...]:
        globs = [(regex.pattern, route) for regex, route in self._globs]
        return (self._exact, globs, self._hook_specs)

    def __eq__(self, other: object) -> bool:
        """Routers built from the same routes and hooks are equal (config comparisons)."""
        return isinstance(other, KitRouter) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<KitRouter {len(self._exact)} names, {len(self._globs)} globs>"


def check_task_routing(app: Celery) -> None:
    """Refuse tasks whose ``queue=``/``priority=`` attribute the topology cannot honour.

    Raises:
        ConfigError: a task names an undeclared queue or a priority off the 0-9 scale.
    """
    from celery_kit.app import settings_of
    from celery_kit.queues import declared_queues

    queues = declared_queues(settings_of(app), str(app.conf.task_default_queue))
    app.finalize(auto=True)
    problems = []
    for task in app.tasks.values():
        queue = getattr(task, "queue", None)
        qname = getattr(queue, "name", queue)
        if qname is not None and qname not in queues:
            problems.append(
                f"task {task.name!r} sets queue={qname!r}, which is not declared in [queues]"
            )
        priority = getattr(task, "priority", None)
        if priority is not None:
            try:
                coerce_priority(priority)
            except ValueError as exc:
                problems.append(f"task {task.name!r}: {exc}")
    if problems:
        raise ConfigError("invalid task routing:\n  - " + "\n  - ".join(problems))


class TopologyChecks(bootsteps.Step):
    """Worker bootstep: run :func:`check_task_routing` before the worker starts.

    Task attributes are only known once task modules are imported; an exception here
    aborts start-up, where a signal receiver's would be logged and swallowed.
    """

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        check_task_routing(parent.app)
        super().__init__(parent, **kwargs)


def _kit_priority_in_request(sender: Any = None, task: Any = None, **_: Any) -> None:
    """Show the task (and Celery's retry/inherit logic) the kit priority it was sent with.

    A worker reads the broker's value into ``request.delivery_info["priority"]``, and
    ``Task.retry`` republishes with that value (``signature_from_request``), which the
    kit would translate a second time. Putting the kit value back prevents that.
    """
    try:
        request = task.request
        info = request.delivery_info or {}
        if info.get("is_eager") or info.get("priority") is None:
            return
        if (kit := delivered_priority(task.app, info)) is not None:
            request.delivery_info = {**info, "priority": kit}
    except Exception:  # an observer must never break a task
        logger.exception("celery_kit: could not translate the delivered priority")


def install_topology(app: Celery, settings: Settings) -> None:
    """Connect the kit's routing checks and priority translation to ``app``.

    ``task_queues``/``task_routes`` themselves come from ``Settings.celery_conf()``.
    """
    from celery import signals

    app.steps["worker"].add(TopologyChecks)
    # One receiver per process (it finds each task's app): a per-app receiver would
    # pile up in processes that build many apps.
    signals.task_prerun.connect(
        _kit_priority_in_request, weak=False, dispatch_uid="celery_kit.routing.priority"
    )
