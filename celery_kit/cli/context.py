"""What every ``kit`` command needs from click's context: the app, its ``-A`` name, options.

Only click at import time (this package is imported by every ``celery`` command).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.config.settings import Settings

__all__ = ["app_of", "app_ref", "forwarded_options", "settings_from"]


def app_of(ctx: click.Context) -> Celery:
    """The app from ``celery -A`` (``ctx.obj.app``) or ``celery-kit --app``."""
    obj = ctx.find_object(object)
    app = getattr(obj, "app", None)
    if app is None and isinstance(ctx.obj, dict) and ctx.obj.get("app_name"):
        # deferred: Celery loads only when a command needs the app
        from celery.app.utils import find_app

        app = find_app(ctx.obj["app_name"])
        ctx.obj["app"] = app
    elif app is None and isinstance(ctx.obj, dict):
        app = ctx.obj.get("app")
    if app is None:
        raise click.UsageError(
            "this command needs an app: celery -A proj kit … or celery-kit -A proj …"
        )
    return app  # type: ignore[no-any-return]


def app_ref(ctx: click.Context) -> str:
    """The ``-A`` value the command was started with, to repeat in worker commands."""
    root = ctx.find_root()
    ref = root.params.get("app")
    if not isinstance(ref, str) and isinstance(ctx.obj, dict):
        ref = ctx.obj.get("app_name")
    if not isinstance(ref, str) or not ref:
        raise click.UsageError("name the app with -A: celery -A proj kit workers")
    return ref


def forwarded_options(ctx: click.Context) -> list[str]:
    """The ``celery`` global options the command was started with, to pass on (``--loader=…``).

    ``--broker`` and ``--result-backend`` are not repeated: URLs carry passwords, and a
    command line is readable by every local user (``ps``). Celery has already put them in
    ``CELERY_BROKER_URL``/``CELERY_RESULT_BACKEND``, which the child inherits.
    """
    root = ctx.find_root().params
    return [
        f"--{option.replace('_', '-')}={root[option]}"
        for option in ("loader", "config")
        if isinstance(root.get(option), str)
    ]


def settings_from(ctx: click.Context) -> Settings:
    """The ``Settings`` of the command's app; a kit error becomes a click error."""
    # deferred: the kit (pydantic, Celery) loads only when a command runs, not with `celery`
    from celery_kit.exceptions import CeleryKitError
    from celery_kit.state import settings_of

    try:
        return settings_of(app_of(ctx))
    except CeleryKitError as exc:
        raise click.ClickException(str(exc)) from None
