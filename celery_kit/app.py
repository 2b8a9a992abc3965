"""``make_app``: the entry point, a plain ``celery.Celery`` built from validated ``Settings``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from celery_kit.build import build_app
from celery_kit.config.settings import Settings
from celery_kit.console import refusals
from celery_kit.exceptions import ConfigError
from celery_kit.state import settings_of

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["build_app", "make_app", "settings_of"]


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
            Under the ``celery``/``celery-kit`` command line the error is printed as one
            short block and the process exits with status 2 instead (``CELERY_KIT_DEBUG=1``
            or ``--traceback``: the exception propagates).
    """
    with refusals():  # under `celery -A proj …`: a short block and exit 2, not a traceback
        return _make_app(name, settings=settings, config=config, framework=framework, **overrides)


def _make_app(
    name: str,
    *,
    settings: Settings | None,
    config: str | os.PathLike[str] | None,
    framework: Literal["django"] | None,
    **overrides: Any,
) -> Celery:
    if settings is not None and (config is not None or overrides or framework is not None):
        raise ConfigError(
            "make_app(): pass either settings= or config=/framework=/keyword settings, not"
            " both (build the Settings with those values instead)"
        )
    if framework == "django":
        # deferred: Django is an optional framework, imported only when asked for
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
