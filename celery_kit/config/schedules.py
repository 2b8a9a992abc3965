"""``[beat]`` and ``[beat.schedule.NAME]``: periodic tasks declared in the config, validated.

Pure settings models (no Redis, no scheduler; that is :mod:`celery_kit.beat`):
``Settings.beat`` holds a :class:`BeatSettings`; :func:`beat_problems` runs the cross-field
rules with the other checks of ``celery_conf``, and :func:`celery_beat_schedule` turns the
entries into Celery's ``beat_schedule`` mapping (emitted by ``celery_conf`` only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from celery_kit.config.topology import PriorityLevel
from celery_kit.config.urls import REDIS_SCHEMES, scheme

if TYPE_CHECKING:
    from celery.schedules import crontab

    from celery_kit.config.settings import Settings
    from celery_kit.config.topology import QueueSpec

__all__ = [
    "ENTRY_HEADER",
    "OVERLAP_HEADER",
    "SLOT_HEADER",
    "BeatSettings",
    "ScheduleEntry",
    "beat_problems",
    "beat_redis_url",
    "celery_beat_schedule",
    "parse_cron",
]

#: Message headers the kit's scheduler stamps on every run it sends (read by the
#: overlap guard in the worker and by tests/bench): entry name, overlap policy, and the
#: schedule slot (epoch seconds) the run stands for.
ENTRY_HEADER = "kit_beat_entry"
OVERLAP_HEADER = "kit_beat_overlap"
SLOT_HEADER = "kit_beat_slot"

_ENTRY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def parse_cron(expression: str, *, zone: str | None = None) -> crontab:
    """A Celery ``crontab`` from a five-field cron expression (``"*/5 * * * *"``), evaluated
    in the IANA time zone ``zone`` if given (else in the app's ``timezone``).

    Raises:
        ValueError: not five fields, or a field Celery cannot parse (the message says which).
    """
    from celery.schedules import crontab

    from celery_kit.config.zoned_cron import ZonedCrontab

    fields = expression.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ValueError(
            f"cron = {expression!r} has {len(fields)} field(s); write five: minute hour"
            " day-of-month month day-of-week, e.g. '*/5 * * * *'"
        )
    try:
        spec = dict(zip(_CRON_FIELDS, fields, strict=True))
        return ZonedCrontab(**spec, zone=zone) if zone else crontab(**spec)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"cron = {expression!r} is not a valid cron expression ({exc}); fields are"
            " minute (0-59) hour (0-23) day-of-month (1-31) month (1-12) day-of-week (0-6)"
        ) from None


class ScheduleEntry(BaseModel):
    """One ``[beat.schedule.NAME]`` table: what to send, when, where, and how it overlaps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Registered task name (checked when the worker/beat starts and by ``kit check``).
    task: str = Field(min_length=1)
    #: Five-field cron expression; exclusive with ``every_s``.
    cron: str | None = None
    #: IANA time zone the ``cron`` fields are read in (``None``: the app's ``timezone``).
    timezone: str | None = None
    #: Fixed interval in seconds (at least 1); runs are aligned to multiples of it since
    #: the epoch, so every beat replica agrees on which slot is due.
    every_s: float | None = None
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    #: Queue to send to (must be declared); ``None``: the task's route.
    queue: str | None = None
    #: Kit priority (0-9 or a name, higher = more urgent); ``None``: the queue's default.
    priority: PriorityLevel | None = None
    #: A run not started within this long is discarded by the worker. ``None``: the
    #: interval (``every_s``, or the time to the next cron time), so missed runs never
    #: pile up in the queue.
    expires_s: float | None = Field(default=None, gt=0)
    #: ``skip``: a run that starts while the previous run of this entry still runs is
    #: skipped (and counted); ``allow``: runs may overlap.
    overlap: Literal["skip", "allow"] = "skip"

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cron(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str | None) -> str | None:
        if value is not None:
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {value!r}; use an IANA name such as 'Europe/Paris'"
                ) from None
        return value

    @field_validator("every_s")
    @classmethod
    def _check_every(cls, value: float | None) -> float | None:
        if value is not None and not value >= 1:
            raise ValueError(
                f"every_s = {value:g} is under one second; beat ticks at most about once a"
                " second, use every_s >= 1 (or a worker loop for sub-second work)"
            )
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> ScheduleEntry:
        if (self.cron is None) == (self.every_s is None):
            both = "both `cron` and" if self.cron is not None else "neither `cron` nor"
            raise ValueError(
                f"{both} `every_s` given; set exactly one, e.g."
                ' cron = "*/5 * * * *" or every_s = 300'
            )
        if self.timezone is not None and self.cron is None:
            raise ValueError(
                "timezone applies to cron entries only (every_s counts seconds); remove it"
            )
        return self

    def celery_schedule(self) -> Any:
        """The Celery schedule object (``crontab`` or ``timedelta``)."""
        if self.cron is not None:
            return parse_cron(self.cron, zone=self.timezone)
        return timedelta(seconds=float(self.every_s or 0))


class BeatSettings(BaseModel):
    """``[beat]``: the one active scheduler (RedBeat, configured by the kit; docs/beat.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    #: Configure RedBeat as the app's beat scheduler. ``None``: when ``schedule`` has
    #: entries. Needs the kit's Redis (``redis.url``, or a Redis broker/backend).
    enabled: bool | None = None
    #: Longest sleep of the beat loop: the leader renews its lock at least this often,
    #: a standby replica checks for a missing leader this often.
    max_loop_interval_s: float = Field(default=5.0, ge=0.5, le=300)
    #: Leader lock lease. ``None``: 5 x ``max_loop_interval_s`` (RedBeat's own ratio): a
    #: standby takes over at most this long (plus one loop) after the leader died.
    lock_timeout_s: float | None = Field(default=None, gt=0)
    #: Beat liveness file, rewritten every loop. ``None``:
    #: ``<temp dir>/celery-kit-beat.heartbeat.json``.
    heartbeat_file: str | None = None
    #: ``kit health --beat --liveness`` fails when the loop has not run for this long.
    max_age_s: float = Field(default=60.0, gt=0)
    #: Port of the beat process's ``/metrics`` (with ``metrics.enabled``); 0: any free
    #: port (logged, and written in the heartbeat file).
    metrics_port: int = Field(default=9809, ge=0, le=65535)
    #: Lease of an entry's overlap lock in the worker; renewed every third of it while the
    #: run lasts, so it only bounds how long a killed worker blocks the next run.
    overlap_lock_ttl_s: float = Field(default=30.0, gt=0)
    #: Entries by name.
    schedule: dict[str, ScheduleEntry] = Field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether the kit configures beat (``enabled``, else: any entry declared)."""
        return bool(self.schedule) if self.enabled is None else self.enabled

    @property
    def effective_lock_timeout_s(self) -> float:
        """The leader lock's lease in seconds."""
        return self.lock_timeout_s or 5 * self.max_loop_interval_s

    @field_validator("schedule")
    @classmethod
    def _check_names(cls, value: dict[str, ScheduleEntry]) -> dict[str, ScheduleEntry]:
        for name in value:
            if not _ENTRY_NAME.match(name):
                raise ValueError(f"entry name {name!r}: use letters, digits, '_', '.' and '-' only")
        return value

    @model_validator(mode="after")
    def _check_timing(self) -> BeatSettings:
        timeout = self.effective_lock_timeout_s
        if timeout < 2 * self.max_loop_interval_s:
            raise ValueError(
                f"beat.lock_timeout_s ({timeout:g}) must be at least twice"
                f" beat.max_loop_interval_s ({self.max_loop_interval_s:g}): the leader renews"
                " once per loop, and one late loop must not hand the lock to a second sender"
            )
        if self.max_age_s < 2 * self.max_loop_interval_s:
            raise ValueError(
                f"beat.max_age_s ({self.max_age_s:g}) must be at least twice"
                f" beat.max_loop_interval_s ({self.max_loop_interval_s:g})"
            )
        return self


def beat_problems(settings: Settings, queues: Mapping[str, QueueSpec]) -> list[str]:
    """Cross-field problems of ``[beat]`` (undeclared queues, beat without Redis)."""
    problems = []
    for name, entry in settings.beat.schedule.items():
        if entry.queue is not None and entry.queue not in queues:
            problems.append(
                f"beat.schedule.{name}: queue {entry.queue!r} is not declared; add it to"
                f" [queues] or use one of {', '.join(sorted(queues))}"
            )
    if settings.beat.active and beat_redis_url(settings) is None:
        problems.append(
            "beat keeps its schedule and leader lock in Redis (RedBeat), but the kit has"
            " no Redis: set redis.url (CELERY_KIT_REDIS__URL), or beat.enabled = false"
        )
    return problems


def beat_redis_url(settings: Settings) -> str | None:
    """The Redis beat uses: the kit's (``redis.url``, else a Redis broker, else a Redis
    result backend; the rule of ``coordination.client.redis_url``), or ``None``."""
    for url in (settings.redis.url, settings.broker_url.split(";")[0], settings.result_backend):
        if url and scheme(url) in REDIS_SCHEMES:
            return url.strip()
    return None


def celery_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery's ``beat_schedule`` for the configured entries (kit headers in options)."""
    out: dict[str, dict[str, Any]] = {}
    for name, entry in settings.beat.schedule.items():
        options: dict[str, Any] = {
            "headers": {ENTRY_HEADER: name, OVERLAP_HEADER: entry.overlap},
        }
        if entry.queue is not None:
            options["queue"] = entry.queue
        if entry.priority is not None:
            options["priority"] = int(entry.priority)
        if entry.expires_s is not None:
            options["expires"] = entry.expires_s
        out[name] = {
            "task": entry.task,
            "schedule": entry.celery_schedule(),
            "args": list(entry.args),
            "kwargs": dict(entry.kwargs),
            "options": options,
        }
    return out
