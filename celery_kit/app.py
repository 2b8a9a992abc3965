"""``make_app``: a plain ``celery.Celery`` built from validated ``Settings``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from celery import Celery, bootsteps

from celery_kit.config import Settings
from celery_kit.exceptions import ConfigError
from celery_kit.observe import install_observability
from celery_kit.routing import install_topology
from celery_kit.tasks import install_tasks

if TYPE_CHECKING:
    from celery import Task

__all__ = ["StartupChecks", "build_app", "check_tasks", "make_app", "settings_of"]

#: Attribute on the app that holds its Settings (no module-level registry: two apps
#: in one process never share state).
_ATTR = "_celery_kit_settings"


def make_app(
    name: str,
    *,
    settings: Settings | None = None,
    config: str | os.PathLike[str] | None = None,
    framework: Literal["django"] | None = None,
    **overrides: Any,
) -> Celery:
    """Build a Celery app with the kit's safe defaults and the given configuration.

    Args:
        name: the app's main module name, as for ``Celery(name)``.
        settings: a ready ``Settings``; exclusive with ``config`` and ``overrides``.
        config: a TOML file (default: ``CELERY_KIT_CONFIG`` if set).
        framework: ``"django"``: ``CELERY_*`` Django settings (and a ``CELERY_KIT`` dict)
            win over kit defaults, tasks get ``delay_on_commit`` (docs/integrations.md).
            Flask: ``celery_kit.integrations.flask.celery_init_app(flask_app)``.
        **overrides: settings by name, highest precedence (``tasks={"time_limit_s": 60}``).

    Returns:
        A ``celery.Celery`` whose ``conf`` carries the effective settings.

    Raises:
        ConfigError: invalid or unsafe settings (the message says what to change).
    """
    if settings is not None and (config is not None or overrides or framework is not None):
        raise ConfigError(
            "make_app(): pass either settings= or config=/framework=/keyword settings, not"
            " both (build the Settings with those values instead)"
        )
    if framework == "django":
        from celery_kit.integrations.django import make_django_app

        return make_django_app(name, config=config, **overrides)
    if framework is not None:
        raise ConfigError(
            f"make_app(framework={framework!r}): the only framework make_app reads is"
            " 'django'; for Flask call celery_kit.integrations.flask.celery_init_app(flask_app)"
        )
    if settings is None:
        settings = Settings(_config=config, **overrides)
    return build_app(name, settings)


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
    app = Celery(name, amqp="celery_kit.publish:KitAMQP", **extra)
    app.conf.update(settings.celery_conf())
    setattr(app, _ATTR, settings)
    app.steps["worker"].add(StartupChecks)
    install_topology(app, settings)
    install_tasks(app, settings)
    install_observability(app, settings)
    return app


def settings_of(app: Celery) -> Settings:
    """The ``Settings`` an app was built from.

    Raises:
        ConfigError: the app was not built by :func:`make_app`.
    """
    settings = getattr(app, _ATTR, None)
    if not isinstance(settings, Settings):
        raise ConfigError(
            f"app {app.main!r} was not built by celery_kit.make_app(); build it with"
            " make_app() to use kit features"
        )
    return settings


class StartupChecks(bootsteps.Step):
    """Worker bootstep: refuse to start a worker whose tasks break the kit's rules.

    An exception here aborts worker start-up, unlike a signal receiver, whose
    exceptions Celery logs and swallows.
    """

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        check_tasks(parent.app)
        super().__init__(parent, **kwargs)


def check_tasks(app: Celery) -> None:
    """Refuse tasks whose own ``time_limit`` exceeds the redelivery budget.

    Time limits set in ``@app.task(time_limit=...)`` are only known once task modules
    are imported, so the worker runs this at start-up (:class:`StartupChecks`).

    Raises:
        ConfigError: a task's limit is above the budget, or its soft limit above its hard.
    """
    from celery_kit.conf import redelivery_budget

    settings = settings_of(app)
    budget = redelivery_budget(settings)
    allowed = budget.max_time_limit_s
    app.finalize(auto=True)
    for task in app.tasks.values():
        limit = getattr(task, "time_limit", None)
        soft = getattr(task, "soft_time_limit", None)
        if limit is not None and float(limit) > allowed:
            raise ConfigError(
                f"task {task.name!r} sets time_limit={limit} but the broker's redelivery"
                f" budget was derived for at most {allowed:g} s ({budget.explain()}). Set"
                f' tasks.limits."{task.name}".time_limit_s = {limit} in the config instead,'
                " so the visibility timeout is derived from it."
            )
        if soft is not None and limit is not None and float(soft) >= float(limit):
            raise ConfigError(
                f"task {task.name!r}: soft_time_limit={soft} must be below time_limit={limit}"
            )
