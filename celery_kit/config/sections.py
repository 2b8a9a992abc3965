"""The ``Settings`` sections of the broker, tasks and the kit's Redis-backed features."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from celery_kit.config import defaults as d
from celery_kit.config.urls import REDIS_SCHEMES, check_redis_url, scheme
from celery_kit.masking import mask

__all__ = [
    "BrokerSettings",
    "DlqSettings",
    "IdempotencySettings",
    "LocksSettings",
    "RedisSettings",
    "RetrySettings",
    "SerializationSettings",
    "TaskLimits",
    "TasksSettings",
    "WorkerSettings",
]


class KitModel(BaseModel):
    """Base of every section: unknown keys refused, values frozen and validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def __repr_args__(self) -> Any:
        """``repr``/``str`` show secrets masked (URL passwords, secret-named fields)."""
        for name, value in super().__repr_args__():
            yield name, mask(value, key=name or "")


class TaskLimits(KitModel):
    """Per-task time limits (emitted as Celery ``task_annotations``)."""

    soft_time_limit_s: float | None = Field(default=None, gt=0)
    time_limit_s: float | None = Field(default=None, gt=0)


class TasksSettings(KitModel):
    """``[tasks]``: acknowledgement, time limits, results and delays."""

    #: Ack after the task ran (see defaults.py for each reason).
    acks_late: bool = d.default_for("tasks.acks_late")
    reject_on_worker_lost: bool = d.default_for("tasks.reject_on_worker_lost")
    soft_time_limit_s: float = Field(default=d.default_for("tasks.soft_time_limit_s"), gt=0)
    time_limit_s: float = Field(default=d.default_for("tasks.time_limit_s"), gt=0)
    track_started: bool = d.default_for("tasks.track_started")
    result_expires_s: int = Field(default=d.default_for("tasks.result_expires_s"), gt=0)
    default_queue: str = Field(default=d.default_for("tasks.default_queue"), min_length=1)
    #: Longest countdown/ETA accepted at publish time (longer ones are refused).
    max_countdown_s: float = Field(default=d.MAX_COUNTDOWN_S, ge=0)
    #: Cap on one retry delay; retries are countdowns, so this feeds the budget too.
    retry_backoff_max_s: float = Field(default=d.RETRY_BACKOFF_MAX_S, ge=0)
    #: Per-task limits by exact task name, e.g. ``{"proj.reports.build": {...}}``.
    limits: dict[str, TaskLimits] = Field(default_factory=dict)
    #: Largest task message body a worker accepts; a bigger one is dead-lettered
    #: (``malformed``) without being decoded, so one huge message cannot stall a worker.
    max_message_bytes: int = d.MAX_MESSAGE_BYTES

    @field_validator("max_message_bytes")
    @classmethod
    def _check_max_message_bytes(cls, value: int) -> int:
        low, high = d.MIN_MESSAGE_BYTES, d.MAX_MESSAGE_BYTES_CEILING
        if not low <= value <= high:
            raise ValueError(
                f"tasks.max_message_bytes = {value} is outside {low}..{high}: below {low} even"
                f" a task without arguments is refused, above {high} no broker delivers it"
                " (Redis strings stop at 512 MiB); the default is"
                f" {d.MAX_MESSAGE_BYTES} (10 MiB)"
            )
        return value


class WorkerSettings(KitModel):
    """``[worker]``: defaults for every worker (profiles may refine them)."""

    prefetch_multiplier: int = Field(default=d.default_for("worker.prefetch_multiplier"))
    #: Recycle a pool child after this many tasks; ``None``: never by count.
    max_tasks_per_child: int | None = Field(default=None, gt=0)
    #: Recycle a pool child above this resident memory (KiB); ``None``: no cap.
    max_memory_per_child_kb: int | None = Field(
        default=d.default_for("worker.max_memory_per_child_kb"), gt=0
    )
    cancel_long_running_tasks_on_connection_loss: bool = d.default_for(
        "worker.cancel_long_running_tasks_on_connection_loss"
    )
    #: Seconds running tasks get at a cold shutdown before being cancelled (Celery 5.5
    #: soft shutdown); ``None``: Celery's 0 (off). Worker profiles may set their own.
    soft_shutdown_timeout_s: float | None = Field(default=None, ge=0)


class BrokerSettings(KitModel):
    """``[broker]``: connection behaviour and the redelivery budget."""

    connection_retry_on_startup: bool = d.default_for("broker.connection_retry_on_startup")
    heartbeat_s: int = Field(default=d.default_for("broker.heartbeat_s"), ge=0)
    health_check_interval_s: int = Field(
        default=d.default_for("broker.health_check_interval_s"), ge=0
    )
    #: Redis only. ``None``: derived from time limits, prefetch and countdowns.
    visibility_timeout_s: float | None = Field(default=None, gt=0)
    #: Slack added to the computed worst case (Redis visibility / RabbitMQ budget).
    visibility_margin_s: float = Field(default=d.VISIBILITY_MARGIN_S, ge=0)
    #: RabbitMQ only: the server's ``consumer_timeout`` (set it if you changed it).
    consumer_timeout_s: float = Field(default=d.RABBITMQ_CONSUMER_TIMEOUT_S, gt=0)
    #: RabbitMQ only: wait for the broker to confirm every publish.
    confirm_publish: bool = True
    #: Extra kombu transport options, merged under the kit's derived ones.
    transport_options: dict[str, Any] = Field(default_factory=dict)
    #: Redis only: ``kit`` (atomic consume, renewal of held messages, prompt restore; see
    #: docs/reliability.md) or ``kombu`` (kombu's transport, timeout from the budget).
    transport: Literal["kit", "kombu"] = "kit"
    #: Kit transport: how often a worker renews every message it holds.
    renewal_interval_s: float = Field(default=d.RENEWAL_INTERVAL_S, gt=0)
    #: Kit transport: how often a worker looks for expired messages to restore.
    restore_interval_s: float = Field(default=d.RESTORE_INTERVAL_S, gt=0)


class SerializationSettings(KitModel):
    """``[serialization]``: JSON only unless ``allow_unsafe`` is set."""

    task_serializer: str = d.default_for("serialization.task_serializer")
    result_serializer: str = d.default_for("serialization.result_serializer")
    accept_content: list[str] = Field(
        default_factory=lambda: d.default_for("serialization.accept_content")
    )
    result_accept_content: list[str] = Field(
        default_factory=lambda: d.default_for("serialization.result_accept_content")
    )
    #: Permit pickle/yaml/msgpack. Anyone who can publish can then run code.
    allow_unsafe: bool = False


class RedisSettings(KitModel):
    """``[redis]``: the Redis that locks, idempotency, rate limits and the DLQ use."""

    #: ``None``: the broker when it is Redis, else the result backend when it is Redis;
    #: a kit Redis feature without either is refused when the app is finalized.
    url: str | None = None
    #: Every key the kit writes starts with ``<key_prefix>:`` (one app per prefix).
    key_prefix: str = Field(default="celery_kit", min_length=1, pattern=r"^[^\s{}]+$")
    #: A helper waits at most this long for one Redis reply.
    socket_timeout_s: float = Field(default=5.0, gt=0)
    #: Retries of one command after a connection error (backoff up to 1 s): a Redis that
    #: is away for a second or two costs latency, not a failed guard.
    retries: int = Field(default=3, ge=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None:
            if scheme(value) not in REDIS_SCHEMES:
                raise ValueError("redis.url must be a redis:// or rediss:// URL")
            check_redis_url(value, what="redis.url")
        return value


class RetrySettings(KitModel):
    """``[retry]``: defaults of ``RetryingTask`` (a task class may set its own)."""

    #: Retries after the first attempt before the task is dead-lettered.
    max_retries: int = Field(default=5, ge=0)
    #: Backoff of retry n is uniform(0, min(cap, base x 2**n)) ("full jitter"); the cap is
    #: ``tasks.retry_backoff_max_s`` (and never above ``tasks.max_countdown_s``).
    backoff_base_s: float = Field(default=1.0, gt=0)


class DlqSettings(KitModel):
    """``[dlq]``: the dead-letter store (on the kit's Redis) and the poison-message cap."""

    #: Write dead letters; off: failures are only logged and stored as FAILURE.
    enabled: bool = True
    #: An entry is deleted this long after it was dead-lettered.
    retention_s: int = Field(default=7 * 86400, gt=0)
    #: The oldest entries are dropped beyond this many.
    max_entries: int = Field(default=10_000, gt=0)
    #: A task whose pool process (or whole worker) died this many times while running it
    #: is dead-lettered instead of requeued again (Celery requeues forever with
    #: reject_on_worker_lost; see ``celery_kit.tasks.poison``). ``None``: no cap.
    max_worker_lost_deliveries: int | None = Field(default=3, ge=1)
    #: How long a task id's worker-lost count is remembered.
    worker_lost_ttl_s: int = Field(default=86400, gt=0)


class IdempotencySettings(KitModel):
    """``[idempotency]``: defaults of the ``idempotency_key`` task option."""

    #: A running claim expires this long after its holder stopped renewing it (crash):
    #: a later delivery waits at most this long. Renewed every lease/3 while running.
    lease_s: float = Field(default=30.0, gt=0)
    #: How long a finished key keeps its result (duplicates return it without running).
    result_ttl_s: int = Field(default=86400, gt=0)
    #: How long a publish reserves its key (enqueue de-duplication) until a worker runs it.
    pending_ttl_s: int = Field(default=3600, gt=0)


class LocksSettings(KitModel):
    """``[locks]``: defaults of the ``lock`` task option."""

    #: Lease of a task lock; renewed every ttl/3 while the task runs, so it only bounds
    #: how long a crashed holder blocks others.
    ttl_s: float = Field(default=30.0, gt=0)
