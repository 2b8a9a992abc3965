"""The kit's Celery router: ``[routes]`` globs, task attributes and business-rule hooks.

Precedence, highest first: per-call options (``apply_async(queue=…, priority=…)``), task
attributes (``@app.task(queue=…, priority=…)``), hooks (``routers = [...]``), the first
matching ``[routes]`` entry (exact names before globs), ``tasks.default_queue``. The
router is a value of the Celery configuration (built in :mod:`.celery_conf`), so it lives
with the specs it is made from.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celery.utils.imports import symbol_by_name

from celery_kit.config.topology import RouteLike, route_spec

__all__ = ["Hook", "KitRouter"]

#: A hook is any Celery router: ``(name, args, kwargs, options, task=None, **kw)``
#: returning a queue name, ``{"queue": …, "priority": …}`` (either key) or ``None``.
Hook = Callable[..., Any]
#: Task names whose glob match is remembered (task names are a small, fixed set).
_MATCH_CACHE_SIZE = 4096


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
            route = route_spec(value).as_route()
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
        found = self.match(name)
        hooks = self._hooks if self._hooks is not None else self.hooks
        # Celery 5.7 also applies these through the options (which beat any router), and
        # warns they leave in 6.0; reading them here keeps them working either way.
        queue = getattr(task, "queue", None) if task is not None else None
        priority = getattr(task, "priority", None) if task is not None else None
        if not (found or hooks or queue is not None or priority is not None):
            return None  # the common case: nothing routes this task
        route = dict(found)
        for hook in hooks:
            answer = hook(name, args, kwargs, options, task=task, **kw)
            if answer:
                route.update({"queue": answer} if isinstance(answer, str) else answer)
                break
        if queue is not None:
            route["queue"] = queue
        if priority is not None:
            route["priority"] = priority
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
