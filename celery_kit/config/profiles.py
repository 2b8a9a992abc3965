"""Worker profiles (``[workers.NAME]``): which queues a worker consumes, and how."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "BULK_PREFETCH_MULTIPLIER",
    "LATENCY_PREFETCH_MULTIPLIER",
    "Autoscale",
    "WorkerProfile",
    "max_prefetch_multiplier",
    "profile_problems",
]

#: Latency profiles reserve one message per process: nothing urgent waits behind a
#: prefetched task, and Redis priority ordering holds (Celery docs recommend 1).
LATENCY_PREFETCH_MULTIPLIER = 1
#: Bulk profiles (short, uniform tasks) save a broker round trip per task. Late ack stays
#: on, so prefetched messages are redelivered if the worker dies; the redelivery budget
#: (Redis visibility timeout, RabbitMQ consumer_timeout check) grows with this.
BULK_PREFETCH_MULTIPLIER = 4


class Autoscale(BaseModel):
    """``autoscale = { max = 10, min = 2 }``: prefork processes grow and shrink in range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: int = Field(ge=1)
    min: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Autoscale:
        if self.min > self.max:
            raise ValueError(f"autoscale min ({self.min}) must not exceed max ({self.max})")
        return self


class WorkerProfile(BaseModel):
    """One ``[workers.NAME]`` table: which queues a worker consumes and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Queues to consume, in order (on Redis, earlier queues win ties at equal priority).
    queues: list[str] = Field(min_length=1)
    #: ``latency``: prefetch 1. ``bulk``: prefetch more (default 4) for short tasks.
    kind: Literal["latency", "bulk"] = "latency"
    #: Pool processes/threads (``-c``); ``None``: Celery's default (number of CPUs).
    concurrency: int | None = Field(default=None, ge=1)
    pool: Literal["prefork", "threads", "solo", "gevent", "eventlet"] = "prefork"
    #: ``None``: 1 for latency profiles, 4 for bulk ones.
    prefetch_multiplier: int | None = Field(default=None, ge=1)
    #: ``None``: ``worker.max_tasks_per_child``.
    max_tasks_per_child: int | None = Field(default=None, ge=1)
    #: ``None``: ``worker.max_memory_per_child_kb``.
    max_memory_per_child_kb: int | None = Field(default=None, ge=1)
    autoscale: Autoscale | None = None
    #: Seconds running tasks get to finish at a cold shutdown before they are cancelled
    #: (Celery 5.5+ soft shutdown); ``None``: ``worker.soft_shutdown_timeout_s``.
    soft_shutdown_timeout_s: float | None = Field(default=None, ge=0)
    #: Node name; ``None``: ``NAME@%h``.
    hostname: str | None = Field(default=None, min_length=1)
    #: ``-l``: INFO logs each task received/succeeded and the worker's ``ready.`` line.
    loglevel: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @property
    def effective_prefetch_multiplier(self) -> int:
        """The prefetch multiplier this profile's workers run with."""
        if self.prefetch_multiplier is not None:
            return self.prefetch_multiplier
        return BULK_PREFETCH_MULTIPLIER if self.kind == "bulk" else LATENCY_PREFETCH_MULTIPLIER

    @field_validator("queues")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        dupes = sorted({q for q in value if value.count(q) > 1})
        if dupes:
            raise ValueError(f"queue(s) listed twice: {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> WorkerProfile:
        if self.autoscale is not None and self.concurrency is not None:
            raise ValueError("set either concurrency or autoscale (its max is the concurrency)")
        if self.autoscale is not None and self.pool != "prefork":
            raise ValueError(f"autoscale needs the prefork pool, not {self.pool!r}")
        return self


def max_prefetch_multiplier(profiles: Mapping[str, WorkerProfile]) -> int:
    """The largest prefetch multiplier any profile runs with (0 without profiles)."""
    return max((p.effective_prefetch_multiplier for p in profiles.values()), default=0)


def profile_problems(profiles: Mapping[str, WorkerProfile], queues: Collection[str]) -> list[str]:
    """Profiles with a bad name or consuming an undeclared queue."""
    problems = []
    for name, profile in profiles.items():
        if not name.replace("_", "").replace("-", "").isalnum():
            problems.append(
                f"workers.{name}: a profile name is a Procfile process type and node name;"
                " use letters, digits, '_' and '-'"
            )
        missing = [q for q in profile.queues if q not in queues]
        if missing:
            problems.append(
                f"workers.{name}: queue(s) {', '.join(map(repr, missing))} not declared in"
                f" [queues] (declared: {', '.join(queues)}); a worker would consume a queue"
                " no task is routed to"
            )
    return problems
