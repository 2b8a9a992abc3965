"""Build the rules' ``Subject`` from a loaded Celery app: effective values, origins, tasks."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from celery_kit.config.celery_keys import CeleryKeys as K
from celery_kit.config.rules.celery_view import task_info
from celery_kit.config.rules.model import Subject, TaskInfo

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["subject_of"]


def subject_of(
    app: Celery, *, tasks: bool = True, consumer_timeout_s: float | None = None
) -> Subject:
    """The rules' view of ``app``.

    Args:
        app: a loaded app (reading ``app.conf`` finalizes its configuration).
        tasks: import the app's task modules (``imports``/``include``, Django's
            autodiscovery) and describe every registered task.
        consumer_timeout_s: RabbitMQ's ``consumer_timeout`` when read from the server.
    """
    conf: dict[str, Any] = {str(k): v for k, v in app.conf.items() if str(k).islower()}
    conf.pop("deprecated_settings", None)
    infos: tuple[TaskInfo, ...] | None = None
    if tasks:
        app.loader.import_default_modules()
        app.finalize(auto=True)
        infos = tuple(
            task_info(t, read_source=True)
            for name, t in sorted(app.tasks.items())
            if not name.startswith("celery.")
        )
    live = None if consumer_timeout_s is None else (consumer_timeout_s, "live: RabbitMQ")
    kit = _kit_settings(app)
    if kit is not None:
        from celery_kit.tasks.checks import kit_subject_of

        base = kit_subject_of(kit, tasks=infos)
        if live is not None:
            base = replace(base, conf={**base.conf, "consumer_timeout": live[0]})
            base = replace(base, origins={**base.origins, "consumer_timeout": live[1]})
        origins = dict(base.origins)
    else:
        base = Subject(conf={}, tasks=infos)
        origins = _origins(app)
        if live is not None:
            conf["consumer_timeout"], origins["consumer_timeout"] = live
    conf.update(base.conf)
    return replace(
        base,
        conf=conf,
        origins=origins,
        celery_version=_celery_version(),
        queue_arguments=_queue_arguments(conf.get(K.task_queues)),
        routed_queues=frozenset(_routed_queues(app, infos or ())),
    )


def _celery_version() -> tuple[int, int]:
    import celery

    major, minor = (int(p) for p in celery.__version__.split(".")[:2])
    return major, minor


def _kit_settings(app: Celery) -> Any:
    from celery_kit.exceptions import ConfigError
    from celery_kit.state import settings_of

    try:
        return settings_of(app)
    except ConfigError:
        return None


def _origins(app: Celery) -> dict[str, str]:
    """Where each explicitly set value came from (kit apps: the kit's own origins)."""
    maps = list(getattr(app.conf, "maps", []))
    source = getattr(app, "_config_source", None)
    label = source if isinstance(source, str) else getattr(source, "__name__", "object")
    namespace = getattr(app, "namespace", None)
    prefix = f"{namespace}_" if namespace else ""
    origins: dict[str, str] = {}
    for position, layer in enumerate(maps[:-1]):  # the last map holds Celery's defaults
        for raw in list(layer):
            raw = str(raw)
            if position == 0:
                if raw.islower() and raw != "deprecated_settings":
                    origins.setdefault(raw, "app.conf (set in code)")
            elif raw.isupper() and prefix and raw.startswith(prefix):
                origins.setdefault(raw[len(prefix) :].lower(), f"config {label} ({raw})")
            elif raw.islower() and not raw.startswith("_"):
                origins.setdefault(raw, f"config {label}")
    return origins


def _queue_arguments(queues: Any) -> dict[str, dict[str, Any]]:
    """Declared queue name -> its arguments (``x-max-priority``, ``x-queue-type``, …)."""
    out: dict[str, dict[str, Any]] = {}
    if isinstance(queues, Mapping):  # old dict form: {name: {"queue_arguments": ...}}
        for name, options in queues.items():
            args = options.get("queue_arguments") if isinstance(options, Mapping) else None
            out[str(name)] = dict(args or {})
        return out
    for queue in queues or ():
        name = getattr(queue, "name", None)
        if name:
            out[str(name)] = dict(getattr(queue, "queue_arguments", None) or {})
    return out


def _routed_queues(app: Celery, tasks: tuple[TaskInfo, ...]) -> set[str]:
    """Queue names that task attributes and dict routes send to."""
    found = {str(getattr(q, "name", q)) for t in tasks if (q := t.routing_attributes.get("queue"))}
    routes = app.conf.get(K.task_routes)
    for route in routes if isinstance(routes, (list, tuple)) else [routes]:
        if isinstance(route, Mapping):
            for value in route.values():
                queue = value.get("queue") if isinstance(value, Mapping) else value
                if isinstance(queue, str):
                    found.add(queue)
                elif queue is not None and getattr(queue, "name", None):
                    found.add(str(queue.name))
        elif route is not None and tasks:
            found |= _ask_router(route, tasks)
    return found


def _ask_router(router: Any, tasks: tuple[TaskInfo, ...]) -> set[str]:
    found: set[str] = set()
    for task in tasks:
        with contextlib.suppress(Exception):  # a custom router may need real arguments
            call = getattr(router, "route_for_task", None)
            answer = call(task.name) if call else router(task.name, (), {}, {})
            queue = answer.get("queue") if isinstance(answer, Mapping) else answer
            if isinstance(queue, str):
                found.add(queue)
    return found
