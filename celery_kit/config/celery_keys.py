"""Names of Celery's settings and environment variables, for code that reads any app's
configuration (the rule engine, ``doctor``, the framework layers)."""

from __future__ import annotations

from functools import cache

__all__ = ["CELERY_ENV", "SHARED_NAMES", "CeleryKeys"]

#: Celery's own environment variables, which beat any configured value
#: (``celery/app/utils.py``), and the kit field each one sets (read below the kit's own
#: ``CELERY_KIT_BROKER_URL``/``CELERY_KIT_RESULT_BACKEND``).
CELERY_ENV: dict[str, str] = {
    "CELERY_BROKER_URL": "broker_url",
    "CELERY_RESULT_BACKEND": "result_backend",
}

#: Celery settings that are kit settings of the same name: the kit derives from them
#: (broker scheme, result backend, kit Redis), so a framework's value for one of them
#: sets the kit field instead of hiding in ``celery_overrides``.
SHARED_NAMES: frozenset[str] = frozenset({"broker_url", "result_backend", "timezone"})


@cache
def _celery_names() -> frozenset[str]:
    from celery.app.defaults import NAMESPACES, flatten

    return frozenset(dict(flatten(NAMESPACES)))


class _CeleryKeys:
    """``CeleryKeys.task_acks_late == "task_acks_late"``: Celery setting names for code that
    reads any app's configuration (the rule engine, ``doctor``), checked against Celery's own
    list, so a misspelled name raises instead of silently reading nothing."""

    def __getattr__(self, name: str) -> str:
        if name.startswith("_") or name not in _celery_names():
            raise AttributeError(f"{name!r} is not a Celery setting (celery.app.defaults)")
        return name


#: See :class:`_CeleryKeys`.
CeleryKeys = _CeleryKeys()
