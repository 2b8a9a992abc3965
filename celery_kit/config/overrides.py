"""``celery_overrides``: any Celery setting by name, checked against Celery's own list."""

from __future__ import annotations

import difflib
import json
from functools import cache
from typing import TYPE_CHECKING, Any

from celery.app import defaults as celery_defaults
from celery.app.defaults import NAMESPACES, flatten

from celery_kit.config.entries import ConfEntry
from celery_kit.config.sources import Origin, OriginKind

if TYPE_CHECKING:
    from celery_kit.config.settings import Settings

__all__ = ["apply_overrides", "celery_options"]


@cache
def celery_options() -> dict[str, Any]:
    """Every Celery setting by its lowercase name (``celery.app.defaults``)."""
    return dict(flatten(NAMESPACES))


def apply_overrides(settings: Settings, conf: dict[str, ConfEntry]) -> list[str]:
    """Put every valid ``celery_overrides`` entry into ``conf`` (dicts merge over the kit's).

    Returns:
        The problems of the others (a name Celery does not know, a value of the wrong
        type), for the caller to report together with every other problem.
    """
    old_to_new: dict[str, str] = getattr(celery_defaults, "_TO_NEW_KEY", {})
    options = celery_options()
    problems = []
    for key, raw in settings.celery_overrides.items():
        where = settings.origin_of(f"celery_overrides.{key}")
        if key not in options:
            if key in old_to_new or key.upper() in old_to_new:
                new = old_to_new.get(key, old_to_new.get(key.upper()))
                hint = f"; old-style name, use `{new}`"
            else:
                close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.7)
                hint = f"; did you mean `{close[0]}`?" if close else ""
            problems.append(
                f"celery_overrides: `{key}` ({where or 'kit default'}) is not a Celery"
                f" setting{hint} (Celery would ignore it silently)"
            )
            continue
        before = len(problems)
        value = _coerce(options[key], raw, key, problems)
        if len(problems) > before:
            continue  # an unusable value is reported, not applied
        if key in conf and isinstance(conf[key].value, dict) and isinstance(value, dict):
            value = {**conf[key].value, **value}
        conf[key] = ConfEntry(
            value, Origin(OriginKind.OVERRIDE, str(where or "")), f"celery_overrides.{key}"
        )
    return problems


def _coerce(option: Any, raw: Any, key: str, problems: list[str]) -> Any:
    """Strings from the environment become the option's type (Celery does not coerce)."""
    if not isinstance(raw, str) or option.type in ("string", "any", None):
        return raw
    try:
        if option.type in ("dict", "tuple"):
            return json.loads(raw)
        return option.to_python(raw)
    except (ValueError, TypeError):
        problems.append(f"celery_overrides: `{key}` = {raw!r} is not a valid {option.type}")
        return raw
