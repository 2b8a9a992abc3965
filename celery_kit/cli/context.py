"""What every ``kit`` command needs from click's context: the app, its ``-A`` name, options.

Only click at import time (this package is imported by every ``celery`` command).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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

        app = _import_app(ctx.obj["app_name"], find_app)
        ctx.obj["app"] = app
    elif app is None and isinstance(ctx.obj, dict):
        app = ctx.obj.get("app")
    if app is None:
        raise click.UsageError(
            "this command needs an app: celery -A proj kit … or celery-kit -A proj …"
        )
    return app  # type: ignore[no-any-return]


def _import_app(name: str, find_app: Callable[[str], Any]) -> Any:
    """``find_app(name)``; a failed import becomes one line saying what could not be imported.

    Kit errors are not caught here: :mod:`celery_kit.console` reports them (exit 2).
    """
    # deferred: only needed once a command runs
    from celery_kit.console import show_traceback

    try:
        return find_app(name)
    except ModuleNotFoundError as exc:
        if show_traceback():
            raise
        module, _, attr = name.partition(":")
        if attr and exc.name == name and importlib.util.find_spec(module) is not None:
            reason = f"module {module!r} has no attribute {attr!r}"
        elif exc.name in (name, module) or (exc.name and module.startswith(f"{exc.name}.")):
            reason = f"no module named {exc.name!r} (run from the project directory, or fix -A)"
        else:
            reason = f"it imports {exc.name!r}, which is not installed"
        raise click.ClickException(f"cannot import the app {name!r} (-A): {reason}") from None
    except (AttributeError, ImportError) as exc:
        if show_traceback():
            raise
        raise click.ClickException(f"cannot import the app {name!r} (-A): {exc}") from None


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
