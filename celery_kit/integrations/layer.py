"""A framework's Celery settings as a ``Settings`` source (``FrameworkLayer``), with origins.

Shared by the Django and Flask integrations; imports no framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery_kit.config.celery_keys import SHARED_NAMES
from celery_kit.config.sources import FrameworkLayer, Origin, OriginKind
from celery_kit.exceptions import ConfigError

__all__ = ["KIT_FIELDS", "framework_layer"]

#: Celery keys that are kit settings of the same name: the kit derives from them (broker
#: scheme, result backend, kit Redis), so they must not hide in ``celery_overrides``.
KIT_FIELDS: frozenset[str] = SHARED_NAMES


def framework_layer(
    celery: Mapping[str, tuple[Any, str]],
    *,
    kit: object,
    kit_name: str,
    kind: OriginKind,
) -> FrameworkLayer:
    """Build the ``Settings`` source for one framework configuration.

    Celery keys become ``broker_url``/``result_backend``/``timezone`` or
    ``celery_overrides.<key>`` entries, so the kit's checks run on them like on any
    override; ``None`` for one of the three kit fields means "not set".

    Args:
        celery: Celery setting name → (value, the framework's name for that setting).
        kit: the framework's dict of kit settings (``Settings`` shape), or ``None``.
        kit_name: how the framework names that dict, e.g. ``CELERY_KIT``.
        kind: ``OriginKind.DJANGO`` or ``OriginKind.FLASK``.

    Raises:
        ConfigError: ``kit`` is not a dict, or it sets a value that a Celery setting
            sets differently.
    """
    if kit is not None and not isinstance(kit, Mapping):
        raise ConfigError(
            f"{kit_name} must be a dict of kit settings, e.g. {{'tasks': {{'time_limit_s':"
            f" 600}}}}; got {type(kit).__name__}"
        )
    data: dict[str, Any] = dict(kit or {})
    given = data.get("celery_overrides")
    if given is not None and not isinstance(given, Mapping):
        raise ConfigError(f"{kit_name}['celery_overrides'] must be a dict of Celery settings")
    overrides: dict[str, Any] = dict(given or {})
    origins: dict[tuple[str, ...], Origin] = {}
    for key, (value, name) in sorted(celery.items()):
        in_fields = key in KIT_FIELDS
        if in_fields and value is None:
            continue
        target = data if in_fields else overrides
        if key in target and target[key] != value:
            where = key if in_fields else f"celery_overrides']['{key}"
            raise ConfigError(
                f"{name} = {value!r} and {kit_name}['{where}'] = {target[key]!r} set the"
                f" same Celery setting differently; keep only one of them"
            )
        target[key] = value
        origins[(key,) if in_fields else ("celery_overrides", key)] = Origin(kind, name)
    if overrides:
        data["celery_overrides"] = overrides
    return FrameworkLayer(data, origins, default=Origin(kind, kit_name))
