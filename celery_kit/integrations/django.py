"""Django: ``make_app("proj", framework="django")`` reads ``CELERY_*`` Django settings.

Values are found exactly as Celery's ``namespace="CELERY"`` finds them, win over the kit's
defaults, and pass the kit's checks; tasks keep ``delay_on_commit`` (``DjangoTask``).
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from celery import Celery
from celery.app import defaults, utils
from celery.app.defaults import SETTING_KEYS
from celery.contrib.django.task import DjangoTask
from celery.fixups.django import DjangoFixup
from celery.utils.collections import DictAttribute
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from celery_kit.build import build_app
from celery_kit.config.defaults import DJANGO_FALLBACKS
from celery_kit.config.settings import Settings
from celery_kit.config.sources import FrameworkLayer, OriginKind
from celery_kit.exceptions import ConfigError
from celery_kit.integrations.layer import framework_layer
from celery_kit.tasks.base import KitTask, RetryingTask

__all__ = [
    "KIT_SETTING",
    "NAMESPACE",
    "DjangoKitTask",
    "DjangoRetryingTask",
    "celery_settings",
    "django_layer",
    "make_django_app",
]

#: Celery's documented namespace for Django (``CELERY_BROKER_URL`` → ``broker_url``).
NAMESPACE = "CELERY"
#: The Django setting holding kit settings, shaped like ``Settings`` (a dict).
KIT_SETTING = "CELERY_KIT"
#: Unknown ``CELERY_*`` names this close to a Celery setting are refused as typos; others
#: are left alone (packages such as django-celery-email use the prefix for their own).
_TYPO_CUTOFF = 0.85


class DjangoKitTask(KitTask, DjangoTask[Any, Any]):
    """``KitTask`` with ``delay_on_commit``/``apply_async_on_commit`` (the app's task class).

    Celery makes ``DjangoTask`` the task class only when no custom class is given
    (``celery/fixups/django.py``); the kit gives one, so it mixes ``DjangoTask`` in.
    """


class DjangoRetryingTask(RetryingTask, DjangoTask[Any, Any]):
    """``RetryingTask`` with the on-commit methods: use as ``@app.task(base=...)``."""


def make_django_app(
    name: str, *, config: str | os.PathLike[str] | None = None, **overrides: Any
) -> Celery:
    """The app for ``make_app(name, framework="django")``.

    Sources, highest first: keyword ``overrides`` > ``CELERY_KIT_*`` environment >
    Django settings (``CELERY_*`` Celery settings, then the ``CELERY_KIT`` dict) > TOML
    file > kit defaults. Django settings are read once, here; Celery's ``conf`` also
    reads them (``config_from_object``), so keys the kit does not set stay live.

    Raises:
        ConfigError: Django settings are not configured, a ``CELERY_*`` name looks like a
            misspelled Celery setting, or the merged settings are invalid or unsafe (the
            message names the Django setting).
    """
    layer, typos = _layer_and_typos(django_settings)
    try:
        settings = Settings(_config=config, _framework=layer, **overrides)
    except ConfigError as exc:  # report the typos together with everything else
        if typos:
            raise ConfigError(_join(typos + _problems(exc))) from None
        raise
    if typos:
        raise ConfigError(_join(typos))
    app = build_app(name, settings, task_cls=DjangoKitTask)
    # Kit values are in app.conf's top layer, so Django's only fill keys the kit leaves
    # unset (as with plain Celery, e.g. override_settings(CELERY_TASK_ALWAYS_EAGER=True)).
    app.config_from_object("django.conf:settings", namespace=NAMESPACE)
    _ensure_fixup(app)
    return app


def django_layer(source: Any) -> FrameworkLayer:
    """The ``Settings`` source for Django settings ``source`` (``django.conf.settings``).

    Raises:
        ConfigError: settings not configured, a misspelled ``CELERY_*`` name, or a
            ``CELERY_KIT`` that is not a dict.
    """
    layer, typos = _layer_and_typos(source)
    if typos:
        raise ConfigError(_join(typos))
    return layer


def _join(problems: list[str]) -> str:
    return "invalid settings:\n  - " + "\n  - ".join(problems)


def _problems(exc: ConfigError) -> list[str]:
    """The items of an "invalid settings:" message (or the message itself)."""
    text = str(exc)
    head = "invalid settings:\n  - "
    return text[len(head) :].split("\n  - ") if text.startswith(head) else [text]


def _layer_and_typos(source: Any) -> tuple[FrameworkLayer, list[str]]:
    """The layer, and the misspelled ``CELERY_*`` names (reported with all other problems)."""
    try:
        names = {name for name in dir(source) if name.isupper()}
    except ImproperlyConfigured as exc:
        raise ConfigError(
            f"make_app(framework='django') needs Django settings: {exc} Set it first, e.g."
            " os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings')"
        ) from None
    found = celery_settings(source)
    for django_name, key in DJANGO_FALLBACKS.items():  # Django's TIME_ZONE, as Celery reads it
        value = getattr(source, django_name, None)
        if key not in found and value:
            found[key] = (value, django_name)
    typos = _typo_problems(names - {name for _, name in found.values()})
    layer = framework_layer(
        found, kit=getattr(source, KIT_SETTING, None), kit_name=KIT_SETTING, kind=OriginKind.DJANGO
    )
    return layer, typos


def celery_settings(source: Any) -> dict[str, tuple[Any, str]]:
    """Celery setting → (value, Django setting name) for every key Celery would read.

    Uses Celery's own lookup for ``config_from_object(..., namespace="CELERY")``: the
    prefixed name first, then old names (``BROKER_URL``, ``CELERYD_PREFETCH_MULTIPLIER``).
    """
    mapping = DictAttribute(source)
    # Celery's app.conf for a namespaced source: same key translators (private, untyped
    # in the stubs), same prefix; tests/unit/integrations/test_django.py pins the result.
    celery_utils: Any = utils
    keys = (celery_utils._old_key_to_new, celery_utils._new_key_to_old)
    view = celery_utils.Settings({}, [mapping], keys, prefix=NAMESPACE)
    found: dict[str, tuple[Any, str]] = {}
    for key in sorted(SETTING_KEYS):
        for name in view._to_keys(key):
            if name.isupper() and name in mapping:
                found[key] = (mapping[name], name)
                break
    return found


def _typo_problems(unused: set[str]) -> list[str]:
    celery_defaults: Any = defaults  # _OLD_SETTING_KEYS is private, absent from the stubs
    prefix = f"{NAMESPACE}_"
    known = {prefix + key.upper() for key in defaults.SETTING_KEYS}
    known |= set(celery_defaults._OLD_SETTING_KEYS)
    problems = []
    for name in sorted(unused):
        if not name.startswith(prefix) or name == KIT_SETTING or name in known:
            continue
        if name.startswith(f"{KIT_SETTING}_"):
            problems.append(
                f"Django setting {name}: kit settings go in the {KIT_SETTING} dict, e.g."
                f" {KIT_SETTING} = {{'tasks': {{'time_limit_s': 600}}}}"
            )
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=_TYPO_CUTOFF)
        if close:
            problems.append(
                f"Django setting {name} is not a Celery setting (Celery would ignore it);"
                f" did you mean {close[0]}?"
            )
    return problems


def _ensure_fixup(app: Celery) -> None:
    """Install Celery's Django fixup when ``DJANGO_SETTINGS_MODULE`` did not (settings made
    with ``settings.configure()``): workers then run ``django.setup()``, manage database
    connections, and ``app.autodiscover_tasks()`` finds the installed apps' tasks."""
    fixups: Any = getattr(app, "_fixups", None)
    if isinstance(fixups, list) and not any(isinstance(f, DjangoFixup) for f in fixups):
        fixup = DjangoFixup(app)
        fixup.install()
        fixups.append(fixup)  # kept alive: its signal receivers are weak references
