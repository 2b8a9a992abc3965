"""Flask: ``celery_init_app(flask_app)`` builds the kit app from ``flask_app.config``.

Follows Flask's Celery pattern (``app.extensions["celery"]``, tasks run inside
``app.app_context()``); the ``CELERY`` config dict wins over the kit's defaults and is checked.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar, cast

from celery_kit.build import build_app
from celery_kit.config.settings import Settings
from celery_kit.config.sources import FrameworkLayer, OriginKind
from celery_kit.exceptions import ConfigError
from celery_kit.integrations.layer import framework_layer
from celery_kit.tasks.base import KitTask

if TYPE_CHECKING:
    from celery import Celery
    from flask import Flask

__all__ = [
    "CELERY_KEY",
    "EXTENSION",
    "KIT_KEY",
    "AppContextTask",
    "app_context_task",
    "celery_init_app",
    "flask_layer",
]

#: ``app.config`` key of the Celery settings dict (lowercase Celery names), as in Flask's
#: docs; ``FLASK_CELERY__broker_url=...`` fills it through ``app.config.from_prefixed_env()``.
CELERY_KEY = "CELERY"
#: ``app.config`` key of the kit settings dict (``Settings`` shape).
KIT_KEY = "CELERY_KIT"
#: ``app.extensions`` key of the Celery app (Flask's docs use the same).
EXTENSION = "celery"


class AppContextTask(KitTask):
    """``KitTask`` whose runs happen inside a Flask app context (``current_app`` works).

    The context wraps ``KitTask.__call__``, so kit task options (locks, idempotency, rate)
    keep working; :func:`app_context_task` makes the subclass bound to one Flask app.
    """

    #: The Flask app whose context each run pushes (set on the bound subclass).
    _flask_app: ClassVar[Flask | None] = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flask_app = type(self)._flask_app
        if flask_app is None:
            return super().__call__(*args, **kwargs)
        with flask_app.app_context():
            return super().__call__(*args, **kwargs)


def app_context_task(flask_app: Flask, *, base: type[KitTask] = KitTask) -> type[KitTask]:
    """A task class running ``base`` inside ``flask_app``'s app context.

    ``celery_init_app`` makes ``app_context_task(flask_app)`` the app's task class; pass
    another base for ``@celery_app.task(base=app_context_task(flask_app,
    base=RetryingTask))``.
    """
    bases = (AppContextTask,) if base is KitTask else (AppContextTask, base)
    attrs = {"_flask_app": flask_app, "__module__": __name__}
    return cast("type[KitTask]", type(f"Flask{base.__name__}", bases, attrs))


def celery_init_app(
    flask_app: Flask,
    *,
    config: str | os.PathLike[str] | None = None,
    set_default: bool = True,
    **kit_overrides: Any,
) -> Celery:
    """Build the kit's Celery app for ``flask_app`` and store it in ``app.extensions``.

    Sources, highest first: ``kit_overrides`` > ``CELERY_KIT_*`` environment >
    ``flask_app.config["CELERY"]`` (Celery settings) and ``["CELERY_KIT"]`` (kit
    settings) > TOML file (``config``) > kit defaults. Read once, here.

    Args:
        flask_app: the Flask app (its ``name`` becomes the Celery app's main name).
        config: a kit TOML file (default: ``CELERY_KIT_CONFIG`` if set).
        set_default: make it Celery's default app, so ``@shared_task`` uses it (Flask's
            pattern).
        **kit_overrides: kit settings by name, as for ``make_app``.

    Returns:
        The Celery app, also at ``flask_app.extensions["celery"]``.

    Raises:
        ConfigError: invalid or unsafe settings (the message names the Flask config key).
    """
    settings = Settings(_config=config, _framework=flask_layer(flask_app.config), **kit_overrides)
    celery_app = build_app(flask_app.name, settings, task_cls=app_context_task(flask_app))
    if set_default:
        celery_app.set_default()
    flask_app.extensions[EXTENSION] = celery_app
    return celery_app


def flask_layer(config: Any) -> FrameworkLayer:
    """The ``Settings`` source for a Flask ``app.config``.

    Raises:
        ConfigError: ``CELERY`` is not a dict of setting names.
    """
    given = config.get(CELERY_KEY) or {}
    if not hasattr(given, "items") or not all(isinstance(k, str) for k in given):
        raise ConfigError(
            f"app.config[{CELERY_KEY!r}] must be a dict of lowercase Celery settings, e.g."
            " {'broker_url': 'redis://localhost:6379/0'}"
        )
    celery = {key: (value, f"{CELERY_KEY}[{key!r}]") for key, value in given.items()}
    return framework_layer(celery, kit=config.get(KIT_KEY), kit_name=KIT_KEY, kind=OriginKind.FLASK)
