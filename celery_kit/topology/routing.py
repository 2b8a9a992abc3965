"""Worker-side topology: refuse task routing the queues cannot honour; install the hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import signals

from celery_kit.config.topology import coerce_priority, declared_queues
from celery_kit.exceptions import ConfigError
from celery_kit.state import settings_of
from celery_kit.topology.canvas import install_canvas_guard
from celery_kit.topology.priority import kit_priority_in_request

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.config.settings import Settings

__all__ = ["check_task_routing", "install_topology"]


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
    """Connect the kit's worker-side priority translation and the canvas countdown guard.

    The queues and the router themselves are values of ``Settings.celery_conf()``; the
    routing check runs in the start-up bootstep (``celery_kit.build.StartupChecks``).
    """
    # One receiver per process (it finds each task's app): a per-app receiver would
    # pile up in processes that build many apps.
    signals.task_prerun.connect(
        kit_priority_in_request, weak=False, dispatch_uid="celery_kit.routing.priority"
    )
    install_canvas_guard()  # a too-long countdown anywhere in a canvas: refused before sending
