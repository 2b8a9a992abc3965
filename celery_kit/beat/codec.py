"""Entries as JSON in Redis: RedBeat's format, plus cron entries with their own time zone.

RedBeat (``redbeat/decoder.py``) writes a crontab as its five fields, so a zone would be
lost; a :class:`~celery_kit.config.zoned_cron.ZonedCrontab` is written as
``{"__type__": "kit_zoned_crontab", …, "zone": "Europe/Paris"}`` and read back as one.
Everything else is RedBeat's own encoding.
"""

from __future__ import annotations

import json
from typing import Any

from redbeat.decoder import RedBeatJSONDecoder, RedBeatJSONEncoder

from celery_kit.config.zoned_cron import ZonedCrontab

__all__ = ["KitJSONDecoder", "KitJSONEncoder", "decode_definition", "encode_definition"]

_ZONED = "kit_zoned_crontab"


class KitJSONEncoder(RedBeatJSONEncoder):  # type: ignore[misc]
    """RedBeat's encoder; zoned crontabs keep their zone."""

    def default(self, obj: Any) -> Any:
        if isinstance(obj, ZonedCrontab):
            out = dict(super().default(obj))
            out.update({"__type__": _ZONED, "zone": obj.zone})
            return out
        return super().default(obj)


class KitJSONDecoder(RedBeatJSONDecoder):  # type: ignore[misc]
    """RedBeat's decoder; reads zoned crontabs back."""

    def dict_to_object(self, d: dict[str, Any]) -> Any:
        if d.get("__type__") == _ZONED:
            fields = {k: v for k, v in d.items() if k not in ("__type__", "zone")}
            return ZonedCrontab(zone=str(d["zone"]), **fields)
        return super().dict_to_object(d)


def encode_definition(entry: Any) -> str:
    """The ``definition`` field RedBeat keeps per entry, as the kit writes it."""
    definition = {
        "name": entry.name,
        "task": entry.task,
        "args": entry.args,
        "kwargs": entry.kwargs,
        "options": entry.options,
        "schedule": entry.schedule,
        "enabled": entry.enabled,
    }
    return json.dumps(definition, cls=KitJSONEncoder, sort_keys=True)


def decode_definition(text: str) -> dict[str, Any]:
    """A ``definition`` field back as keyword arguments of the entry."""
    return dict(json.loads(text, cls=KitJSONDecoder))
