"""``ZonedCrontab``: a Celery ``crontab`` read in its own time zone (``[beat.schedule]``
entries with ``timezone``), instead of the app's.

Celery 5.7 evaluates a crontab in ``self.tz`` (``crontab.remaining_delta`` converts both
``last_run_at`` and now into it), so the zone only has to be carried: it is kept across
pickling, compared by ``==``, and written to Redis by the kit's scheduler
(``celery_kit.beat.codec``), because RedBeat's JSON keeps the five fields only.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

from celery.schedules import crontab

__all__ = ["ZonedCrontab"]


class ZonedCrontab(crontab):
    """``crontab(minute, hour, …, zone="Europe/Paris")``."""

    def __init__(self, *args: Any, zone: str, **kwargs: Any) -> None:
        zoneinfo.ZoneInfo(zone)  # an unknown zone fails here, not at the first due check
        self.zone = zone
        self._args, self._kwargs = args, kwargs
        super().__init__(*args, **kwargs)

    @property
    def tz(self) -> str:
        """The entry's zone name (Celery's crontab uses the app's ``timezone``)."""
        return self.zone

    def __reduce__(self) -> Any:
        return (_rebuild, (self._args, self.zone, dict(self._kwargs)))

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, crontab) and getattr(other, "zone", None) != self.zone:
            return False
        return super().__eq__(other)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]} {self.zone}>"


def _rebuild(fields: tuple[Any, ...], zone: str, kwargs: dict[str, Any]) -> ZonedCrontab:
    return ZonedCrontab(*fields, zone=zone, **kwargs)
