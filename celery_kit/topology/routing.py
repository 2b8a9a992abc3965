"""Worker-side topology: refuse task routing the queues cannot honour; install the hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import signals

from celery_kit.config.topology import coerce_priority, declared_queues
from celery_kit.exceptions import ConfigError
from celery_kit.state import settings_of
from celery_kit.topology.canvas import install_canvas_guard
from celery_kit.topology.priority import kit_priority_in_request

if TYPE_CHECKING:
    from collections.abc import Callable

    from celery import Celery

    from celery_kit.config.settings import Settings

__all__ = ["check_task_routing", "connect_priority_receivers", "install_topology"]


def check_task_routing(app: Celery) -> None:
    """Refuse tasks whose ``queue=``/``priority=`` attribute the topology cannot honour.

    Raises:
        ConfigError: a task names an undeclared queue or a priority off the 0-9 scale.
    """
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


def install_topology(app: Celery, settings: Settings) -> None:
    """Connect the canvas countdown guard. The queues and the router are values of
    ``Settings.celery_conf()``, the routing check runs in the start-up bootstep
    (``celery_kit.build.StartupChecks``), and the delivered priority is translated by
    ``KitTask`` itself or by :func:`connect_priority_receivers` at worker start.
    """
    install_canvas_guard()  # a too-long countdown anywhere in a canvas: refused before sending


def connect_priority_receivers(app: Celery, *, translates: Callable[[Any], bool]) -> int:
    """Worker start: connect :func:`kit_priority_in_request` for each task of ``app`` that
    does not translate its delivered priority itself (``translates(task)`` is false, e.g.
    a task declared with ``base=celery.Task``), with that task as the only sender.

    Celery sends ``task_prerun`` only when it has receivers
    (``celery/app/trace.py: build_tracer``), so an app whose tasks all translate for
    themselves pays nothing per task. Returns how many receivers were connected.
    """
    app.finalize(auto=True)
    connected = 0
    for task in app.tasks.values():
        if task.name.startswith("celery.") or translates(task):
            continue
        signals.task_prerun.connect(
            kit_priority_in_request,
            sender=task,
            weak=False,
            dispatch_uid=f"celery_kit.routing.priority.{id(task)}",
        )
        connected += 1
    return connected
