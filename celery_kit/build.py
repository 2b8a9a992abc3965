"""``build_app``: a plain ``celery.Celery`` wired from validated ``Settings`` (one place).

The order is the data flow: ``Settings`` → Celery ``conf`` (:mod:`celery_kit.config`) →
``KitState`` (:mod:`celery_kit.state`) → the install steps of topology, tasks and
observability, each attaching its Celery hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Celery, bootsteps

from celery_kit.console import refusals
from celery_kit.delays.step import install_delays
from celery_kit.observability.install import install_observability
from celery_kit.state import attach_state
from celery_kit.tasks.base import KitTask, install_tasks
from celery_kit.tasks.checks import check_redis_options, check_tasks
from celery_kit.tasks.completion import connect_completion_flush
from celery_kit.topology.acks import install_prompt_ack
from celery_kit.topology.routing import (
    check_task_routing,
    connect_priority_receivers,
    install_topology,
)
from celery_kit.topology.shutdown import install_deferred_shutdown

if TYPE_CHECKING:
    from celery import Task

    from celery_kit.config.settings import Settings

__all__ = ["AMQP_CLASS", "StartupChecks", "build_app", "run_startup_checks"]

#: Celery's ``amqp=`` extension point: the kit's publish path (``topology.publish``).
AMQP_CLASS = "celery_kit.topology.publish:KitAMQP"


def build_app(
    name: str, settings: Settings, *, task_cls: type[Task[Any, Any]] | None = None
) -> Celery:
    """Build the app for ready ``settings`` (shared by ``make_app`` and the integrations).

    Args:
        name: the app's main module name.
        settings: the validated settings; ``conf`` receives exactly ``settings.celery_conf()``.
        task_cls: a ``KitTask`` subclass to use as the app's task class (framework glue);
            ``None``: ``KitTask``, mixed with Django's task class when Celery picked it.
    """
    extra: dict[str, Any] = {} if task_cls is None else {"task_cls": task_cls}
    app = Celery(name, amqp=AMQP_CLASS, **extra)
    app.conf.update(settings.celery_conf())
    attach_state(app, settings)
    app.steps["worker"].add(StartupChecks)
    install_topology(app, settings)
    install_tasks(app, settings)
    install_observability(app, settings)
    install_deferred_shutdown(app)  # acts only under REMAP_SIGTERM=SIGQUIT (docs/deploy.md)
    install_prompt_ack(app)  # acts only in solo workers on RabbitMQ (topology/acks.py)
    install_delays(app, settings)
    return app


def run_startup_checks(app: Celery) -> None:
    """Every refusal that needs the imported task modules, in one place.

    Raises:
        ConfigError: a task's time limit exceeds the redelivery budget, its routing names
            an undeclared queue or an off-scale priority, or its kit options have no Redis.
    """
    check_tasks(app)
    check_task_routing(app)
    check_redis_options(app)


class StartupChecks(bootsteps.Step):
    """Worker bootstep: refuse to start a worker whose tasks break the kit's rules.

    Task attributes are only known once task modules are imported, so the checks run
    here. An exception in a bootstep's constructor aborts worker start-up, unlike a
    signal receiver, whose exceptions Celery logs and swallows.
    """

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        with refusals():  # one short block and exit 2, not Celery's traceback
            run_startup_checks(parent.app)
        # before the pool forks: children inherit the receivers
        connect_priority_receivers(parent.app, translates=lambda task: isinstance(task, KitTask))
        connect_completion_flush(parent.app)
        super().__init__(parent, **kwargs)
