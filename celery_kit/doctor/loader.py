"""Load any Celery app the way ``celery -A`` does, Django projects included."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from celery_kit.console import caller_reports
from celery_kit.exceptions import CeleryKitError

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["AppLoadError", "load_app"]


class AppLoadError(CeleryKitError):
    """The app named with ``-A`` could not be imported or configured.

    ``str()`` is one line; ``problems`` lists every refusal when the app's own settings
    were refused (a kit ``ConfigError`` reports all of them at once).
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


def load_app(ref: str) -> Celery:
    """Import the app ``ref`` (``proj``, ``proj.celery``, ``proj.celery:app``) and configure it.

    Uses Celery's own ``find_app`` (a module's ``app``/``celery`` attribute, its
    ``celery`` submodule, or the first ``Celery`` instance in it). The configuration is
    loaded here too (Django settings through ``DJANGO_SETTINGS_MODULE``), so a broken
    settings module is reported as a load failure.

    Raises:
        AppLoadError: one line saying what could not be loaded and why.
    """
    from celery import Celery
    from celery.app.utils import find_app

    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, "")  # like `celery -A`: the app module is found from the cwd
    try:
        try:
            with caller_reports():  # make_app's refusal reaches us, not the short block
                app = find_app(ref)
        except ValueError as exc:  # Celery wraps import-time errors ("Couldn't import")
            raise _kit_cause(exc) or exc from None
    except CeleryKitError as exc:
        problems = _problems(exc)
        summary = (
            problems[0]
            if len(problems) == 1
            else f"{len(problems)} problems: " + "; ".join(problems)
        )
        raise AppLoadError(f"cannot load app {ref!r}: {summary}", tuple(problems)) from exc
    except ModuleNotFoundError as exc:
        raise AppLoadError(
            f"cannot load app {ref!r}: no module named {exc.name!r} (run from the project"
            " directory or put it on PYTHONPATH)"
        ) from exc
    except Exception as exc:
        raise AppLoadError(
            f"cannot load app {ref!r}: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    if not isinstance(app, Celery):
        raise AppLoadError(
            f"cannot load app {ref!r}: it names a {type(app).__name__}, not a Celery app"
            " (use module:attribute)"
        )
    try:
        app.conf.get("broker_url")  # loads config_from_object() sources (Django settings)
    except Exception as exc:
        raise AppLoadError(
            f"cannot load the configuration of app {ref!r}: {type(exc).__name__}:"
            f" {_first_line(exc)}"
        ) from exc
    return app


def _kit_cause(exc: BaseException) -> CeleryKitError | None:
    """The kit error (a refused configuration) behind a wrapped import error, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, CeleryKitError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _problems(exc: BaseException) -> list[str]:
    """The items of an "invalid settings:" message, or its first line."""
    text = str(exc).strip()
    head = "invalid settings:\n  - "
    if text.startswith(head):
        return [" ".join(p.split()) for p in text[len(head) :].split("\n  - ")]
    return [_first_line(exc)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
