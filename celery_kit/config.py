"""``Settings``: the one typed, frozen, validated configuration object of celery_kit.

Sources, highest first: keyword arguments > environment (``CELERY_KIT_*``, ``__`` for
nesting, plus Celery's own ``CELERY_BROKER_URL``/``CELERY_RESULT_BACKEND``) > a TOML file
(``config=`` or ``CELERY_KIT_CONFIG``) > the defaults in :mod:`celery_kit.defaults`.
Loading and origin tracking live in :mod:`celery_kit.sources`; the translation to Celery
keys (and every cross-field rule on the effective values) in :mod:`celery_kit.conf`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from celery_kit import defaults as d
from celery_kit.conf import build_conf
from celery_kit.queues import QueueSpec, default_queues
from celery_kit.routing import RouteSpec, check_hook_path
from celery_kit.sources import FrameworkLayer, Origin, load_layers, validate_into
from celery_kit.workers import WorkerProfile

__all__ = [
    "BrokerSettings",
    "DlqSettings",
    "FlowerSettings",
    "HealthSettings",
    "IdempotencySettings",
    "LocksSettings",
    "MetricsSettings",
    "RedisSettings",
    "RetrySettings",
    "SerializationSettings",
    "Settings",
    "TaskLimits",
    "TasksSettings",
    "WorkerSettings",
]

#: Broker schemes the kit supports, and why some common others are not.
SUPPORTED_BROKER_SCHEMES: frozenset[str] = frozenset({"redis", "rediss", "amqp", "amqps", "pyamqp"})
_UNSUPPORTED_BROKERS: dict[str, str] = {
    "sqs": "SQS has no priorities and its own visibility semantics the kit does not derive",
    "memory": "the in-memory transport is not shared between processes",
    "filesystem": "the filesystem transport has no acknowledgement semantics",
    "librabbitmq": "librabbitmq is unmaintained; use amqp:// (py-amqp)",
}
_AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
_REDIS_SCHEMES = frozenset({"redis", "rediss"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class TaskLimits(_Model):
    """Per-task time limits (emitted as Celery ``task_annotations``)."""

    soft_time_limit_s: float | None = Field(default=None, gt=0)
    time_limit_s: float | None = Field(default=None, gt=0)


class TasksSettings(_Model):
    """``[tasks]``: acknowledgement, time limits, results and delays."""

    #: Ack after the task ran (see defaults.py for each reason).
    acks_late: bool = d.kit_value("task_acks_late")
    reject_on_worker_lost: bool = d.kit_value("task_reject_on_worker_lost")
    soft_time_limit_s: float = Field(default=d.kit_value("task_soft_time_limit"), gt=0)
    time_limit_s: float = Field(default=d.kit_value("task_time_limit"), gt=0)
    track_started: bool = d.kit_value("task_track_started")
    result_expires_s: int = Field(default=d.kit_value("result_expires"), gt=0)
    default_queue: str = Field(default=d.kit_value("task_default_queue"), min_length=1)
    #: Longest countdown/ETA accepted at publish time (longer ones are refused).
    max_countdown_s: float = Field(default=d.MAX_COUNTDOWN_S, ge=0)
    #: Cap on one retry delay; retries are countdowns, so this feeds the budget too.
    retry_backoff_max_s: float = Field(default=d.RETRY_BACKOFF_MAX_S, ge=0)
    #: Per-task limits by exact task name, e.g. ``{"proj.reports.build": {...}}``.
    limits: dict[str, TaskLimits] = Field(default_factory=dict)


class WorkerSettings(_Model):
    """``[worker]``: defaults for every worker (profiles may refine them)."""

    prefetch_multiplier: int = Field(default=d.kit_value("worker_prefetch_multiplier"))
    max_tasks_per_child: int | None = Field(default=d.kit_value("worker_max_tasks_per_child"), gt=0)
    max_memory_per_child_kb: int | None = Field(default=None, gt=0)
    cancel_long_running_tasks_on_connection_loss: bool = d.kit_value(
        "worker_cancel_long_running_tasks_on_connection_loss"
    )
    #: Seconds running tasks get at a cold shutdown before being cancelled (Celery 5.5
    #: soft shutdown); ``None``: Celery's 0 (off). Worker profiles may set their own.
    soft_shutdown_timeout_s: float | None = Field(default=None, ge=0)


class BrokerSettings(_Model):
    """``[broker]``: connection behaviour and the redelivery budget."""

    connection_retry_on_startup: bool = d.kit_value("broker_connection_retry_on_startup")
    heartbeat_s: int = Field(default=d.kit_value("broker_heartbeat"), ge=0)
    health_check_interval_s: int = Field(
        default=d.kit_value("redis_backend_health_check_interval"), ge=0
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


class SerializationSettings(_Model):
    """``[serialization]``: JSON only unless ``allow_unsafe`` is set."""

    task_serializer: str = d.kit_value("task_serializer")
    result_serializer: str = d.kit_value("result_serializer")
    accept_content: list[str] = Field(default_factory=lambda: d.kit_value("accept_content"))
    result_accept_content: list[str] = Field(
        default_factory=lambda: d.kit_value("result_accept_content")
    )
    #: Permit pickle/yaml/msgpack. Anyone who can publish can then run code.
    allow_unsafe: bool = False


class RedisSettings(_Model):
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
            if _scheme(value) not in _REDIS_SCHEMES:
                raise ValueError("redis.url must be a redis:// or rediss:// URL")
            _check_redis_url(value, what="redis.url")
        return value


class RetrySettings(_Model):
    """``[retry]``: defaults of ``RetryingTask`` (a task class may set its own)."""

    #: Retries after the first attempt before the task is dead-lettered.
    max_retries: int = Field(default=5, ge=0)
    #: Backoff of retry n is uniform(0, min(cap, base x 2**n)) ("full jitter"); the cap is
    #: ``tasks.retry_backoff_max_s`` (and never above ``tasks.max_countdown_s``).
    backoff_base_s: float = Field(default=1.0, gt=0)


class DlqSettings(_Model):
    """``[dlq]``: the dead-letter store (on the kit's Redis) and the poison-message cap."""

    #: Write dead letters; off: failures are only logged and stored as FAILURE.
    enabled: bool = True
    #: An entry is deleted this long after it was dead-lettered.
    retention_s: int = Field(default=7 * 86400, gt=0)
    #: The oldest entries are dropped beyond this many.
    max_entries: int = Field(default=10_000, gt=0)
    #: A task whose pool process died this many times is dead-lettered instead of
    #: requeued again (Celery requeues forever with reject_on_worker_lost). ``None``: no cap.
    max_worker_lost_deliveries: int | None = Field(default=3, ge=1)
    #: How long a task id's worker-lost count is remembered.
    worker_lost_ttl_s: int = Field(default=86400, gt=0)


class IdempotencySettings(_Model):
    """``[idempotency]``: defaults of the ``idempotency_key`` task option."""

    #: A running claim expires this long after its holder stopped renewing it (crash):
    #: a later delivery waits at most this long. Renewed every lease/3 while running.
    lease_s: float = Field(default=30.0, gt=0)
    #: How long a finished key keeps its result (duplicates return it without running).
    result_ttl_s: int = Field(default=86400, gt=0)
    #: How long a publish reserves its key (enqueue de-duplication) until a worker runs it.
    pending_ttl_s: int = Field(default=3600, gt=0)


class LocksSettings(_Model):
    """``[locks]``: defaults of the ``lock`` task option."""

    #: Lease of a task lock; renewed every ttl/3 while the task runs, so it only bounds
    #: how long a crashed holder blocks others.
    ttl_s: float = Field(default=30.0, gt=0)


# fmt: off
#: celery-exporter's runtime buckets (prometheus_client's defaults), so dashboards match.
_RUNTIME_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                      7.5, 10.0)
#: Waiting in a queue lasts longer than running: buckets up to an hour.
_QUEUE_WAIT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                         300.0, 600.0, 1800.0, 3600.0)
# fmt: on
#: Label names the kit's metrics use themselves (static labels may not reuse them).
_RESERVED_LABELS = frozenset({"name", "hostname", "queue_name", "exception", "le", "quantile"})
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class MetricsSettings(_Model):
    """``[metrics]``: Prometheus metrics from Celery signals, correct under the prefork pool."""

    #: Count tasks and serve ``/metrics`` from each worker's main process.
    enabled: bool = False
    #: Address of the worker's ``/metrics`` endpoint (Prometheus must reach it).
    address: str = "0.0.0.0"
    #: Port of the worker's endpoint (celery-exporter's); ``0``: any free port (logged).
    port: int = Field(default=9808, ge=0, le=65535)
    #: Every metric is named ``<prefix>_…``; celery-exporter dashboards expect ``celery``.
    prefix: str = Field(default="celery", pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    #: Static labels added to every metric, e.g. ``{ env = "prod" }``.
    labels: dict[str, str] = Field(default_factory=dict)
    #: Prometheus multiprocess directory; ``None``: ``PROMETHEUS_MULTIPROC_DIR``, else a
    #: private temporary directory per worker. Never share one between two workers.
    multiproc_dir: str | None = None
    #: Buckets of ``celery_task_runtime`` (seconds).
    runtime_buckets_s: list[float] = Field(default_factory=lambda: list(_RUNTIME_BUCKETS_S))
    #: Buckets of ``celery_task_queue_wait_time`` (seconds, publish or ETA → start).
    queue_wait_buckets_s: list[float] = Field(default_factory=lambda: list(_QUEUE_WAIT_BUCKETS_S))
    #: Sample ``celery_queue_length`` in every worker's main process. Off: run ONE
    #: ``celery -A proj kit exporter`` per deployment (N workers would report N copies).
    queue_length_in_worker: bool = False
    #: How often the queue-length poller asks the broker.
    queue_length_interval_s: float = Field(default=15.0, gt=0)
    #: Queues whose length is sampled; empty: every queue the app declares.
    queues: list[str] = Field(default_factory=list)

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _LABEL_NAME.match(name) or name.startswith("__"):
                raise ValueError(f"metrics.labels: {name!r} is not a valid Prometheus label name")
            if name in _RESERVED_LABELS:
                raise ValueError(
                    f"metrics.labels: {name!r} is a label of the kit's own metrics; pick"
                    " another name"
                )
        return value

    @field_validator("runtime_buckets_s", "queue_wait_buckets_s")
    @classmethod
    def _check_buckets(cls, value: list[float]) -> list[float]:
        if not value or any(b <= 0 for b in value) or sorted(set(value)) != list(value):
            raise ValueError("histogram buckets must be positive, strictly increasing seconds")
        return value


class HealthSettings(_Model):
    """``[health]``: the worker heartbeat that ``kit health --liveness/--readiness`` reads."""

    #: Keep a heartbeat (a bootstep in the worker's main process).
    enabled: bool = True
    #: Heartbeat file; ``%n`` is the worker's node name (``celery`` in ``celery@host``).
    #: ``None``: ``<temp dir>/celery-kit-%n.heartbeat.json``.
    heartbeat_file: str | None = None
    #: How often the worker checks that it consumes and rewrites the heartbeat.
    interval_s: float = Field(default=5.0, gt=0)
    #: Liveness fails when the worker has not proven it consumes for this long.
    max_age_s: float = Field(default=60.0, gt=0)
    #: Also keep ``<redis.key_prefix>:health:worker:<hostname>`` (expires after
    #: ``max_age_s``) on the kit's Redis, so ``kit health`` lists the workers it sees.
    redis_key: bool = True
    #: Timeout of the heartbeat's own broker round trip (it runs in the event loop).
    broker_timeout_s: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _check_age(self) -> HealthSettings:
        if self.max_age_s < 2 * self.interval_s:
            raise ValueError(
                f"health.max_age_s ({self.max_age_s:g}) must be at least twice"
                f" health.interval_s ({self.interval_s:g}), or one late tick fails liveness"
            )
        if self.broker_timeout_s >= self.interval_s:
            raise ValueError(
                f"health.broker_timeout_s ({self.broker_timeout_s:g}) must be below"
                f" health.interval_s ({self.interval_s:g})"
            )
        return self


class FlowerSettings(_Model):
    """``[flower]``: the ``celery -A proj kit flower`` preset (docs/flower.md).

    Credentials are not settings: they come from ``FLOWER_BASIC_AUTH``, a secret file or
    the ``FLOWER_OAUTH2_*`` variables, so they never sit in a config file or in ``ps``.
    """

    #: Loopback: only a reverse proxy on this host reaches Flower. /metrics and /healthcheck
    #: answer WITHOUT authentication on whatever address Flower binds (Flower's design).
    address: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=5555, ge=1, le=65535)
    #: Serve under ``/<url_prefix>/`` (a reverse proxy location); empty: at ``/``.
    url_prefix: str = ""
    #: File of ``user:password`` lines (mode 600); ``FLOWER_BASIC_AUTH`` also works.
    basic_auth_file: str | None = None
    #: OAuth: allowed emails, Flower 2.2 syntax: ``a@x.com|b@x.com`` or ``.*@x.com``.
    auth: str | None = None
    #: OAuth login handler: google, github, gitlab, okta, or a dotted class path.
    auth_provider: str | None = None
    #: Start even without any authentication (trusted networks only).
    allow_insecure: bool = False
    #: Keep Flower's task/worker state across restarts in ``db`` (a pickle shelve).
    persistent: bool = True
    #: State file (dbm may add suffixes); only Flower's user may write its directory.
    db: str = Field(default="flower-state", min_length=1)
    #: Save the state this often too, not only at a clean stop; 0: only at stop.
    state_save_interval_s: float = Field(default=60.0, ge=0)
    #: Drop workers offline this long from the UI and metrics; ``None``: keep them.
    purge_offline_workers_s: int | None = Field(default=3600, ge=1)
    #: Disable Flower's control operations (revoke, shutdown, pool resize, apply).
    read_only: bool = True
    #: Flower broadcasts ``enable_events`` every 5 s, so watched workers send task events.
    enable_events: bool = True
    #: make_app sets worker_send_task_events and task_send_sent_event (about one extra
    #: message per task state change; docs/flower.md).
    task_events: bool = False

    @field_validator("url_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        value = value.strip("/")
        if value and not re.fullmatch(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*", value):
            raise ValueError(
                f"flower.url_prefix {value!r}: use URL path segments of letters, digits and"
                " . _ ~ -, e.g. 'flower' or 'ops/flower'"
            )
        return value

    @model_validator(mode="after")
    def _check_oauth(self) -> FlowerSettings:
        from celery_kit.flower_auth import auth_pattern_problem

        if (self.auth is None) != (self.auth_provider is None):
            raise ValueError(
                "flower.auth (allowed emails) and flower.auth_provider go together: with"
                " only a provider Flower lets everyone in, with only emails nobody logs in"
            )
        if self.auth is not None and (problem := auth_pattern_problem(self.auth)):
            raise ValueError(problem)
        return self


class Settings(BaseSettings):
    """Everything celery_kit needs to build an app, validated once.

    ``Settings(**values)`` reads the environment and the TOML file like any
    pydantic-settings object (keyword arguments win). Pass ``_config=PATH`` to name the
    TOML file and ``_environ=MAPPING`` to read a mapping instead of ``os.environ``.
    ``_framework`` (built by ``celery_kit.integrations``) adds Django's or Flask's
    configuration above the TOML file and below the environment.

    Raises:
        ConfigError: a key is unknown, a value malformed, or two values unsafe together.
    """

    model_config = SettingsConfigDict(
        env_prefix="CELERY_KIT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    broker_url: str = "redis://127.0.0.1:6379/0"
    #: ``None``: the broker's Redis when the broker is Redis, else results are disabled.
    result_backend: str | None = None
    timezone: str = d.kit_value("timezone")
    tasks: TasksSettings = Field(default_factory=TasksSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    serialization: SerializationSettings = Field(default_factory=SerializationSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    dlq: DlqSettings = Field(default_factory=DlqSettings)
    idempotency: IdempotencySettings = Field(default_factory=IdempotencySettings)
    locks: LocksSettings = Field(default_factory=LocksSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    flower: FlowerSettings = Field(default_factory=FlowerSettings)
    #: Queue topology in consumption order (docs/topology.md); replaces the default one.
    queues: dict[str, QueueSpec] = Field(default_factory=default_queues)
    #: Task name or glob → queue name or ``{queue, priority}``; first match wins.
    routes: dict[str, RouteSpec] = Field(default_factory=dict)
    #: Business-rule routers (callables or ``"pkg.mod:func"``) consulted before ``routes``.
    routers: list[str | Callable[..., Any]] = Field(default_factory=list)
    #: Worker profiles: ``celery -A proj kit workers`` prints one command per profile.
    workers: dict[str, WorkerProfile] = Field(default_factory=dict)
    #: Any Celery setting by its lowercase name, applied last and shown as "override".
    celery_overrides: dict[str, Any] = Field(default_factory=dict)

    _origins: dict[tuple[str, ...], Origin] = PrivateAttr(default_factory=dict)

    def __init__(
        self,
        _config: str | os.PathLike[str] | None = None,
        _environ: Mapping[str, str] | None = None,
        _framework: FrameworkLayer | None = None,
        **values: Any,
    ) -> None:
        merged, origins = load_layers(
            type(self), config=_config, environ=_environ, kwargs=values, framework=_framework
        )
        validate_into(self, merged, origins, super().__init__)
        self._origins = origins
        build_conf(self)  # cross-field rules run on the effective Celery values

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # celery_kit.sources merges env and TOML itself (it must know where every value
        # came from); pydantic-settings only validates the merged result.
        return (init_settings,)

    # -- derived facts -----------------------------------------------------------------

    @property
    def broker_scheme(self) -> str:
        """Scheme of the (first) broker URL, e.g. ``redis`` or ``amqp``."""
        return _scheme(self.broker_url.split(";")[0])

    @property
    def is_redis_broker(self) -> bool:
        """True when the broker is Redis (visibility timeout applies)."""
        return self.broker_scheme in _REDIS_SCHEMES

    @property
    def is_amqp_broker(self) -> bool:
        """True when the broker is RabbitMQ (``consumer_timeout`` applies)."""
        return self.broker_scheme in _AMQP_SCHEMES

    def origin_of(self, path: str) -> Origin | None:
        """Where the value at dotted ``path`` came from, or ``None`` for a kit default."""
        key = tuple(path.split("."))
        while key:
            if key in self._origins:
                return self._origins[key]
            key = key[:-1]
        return None

    def celery_conf(self) -> dict[str, Any]:
        """The Celery settings this object stands for (plain values, ready for ``conf``)."""
        return {key: entry.value for key, entry in build_conf(self).items()}

    # -- single-field rules ------------------------------------------------------------

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str) -> str:
        for url in value.split(";"):
            scheme = _scheme(url)
            if scheme not in SUPPORTED_BROKER_SCHEMES:
                why = _UNSUPPORTED_BROKERS.get(scheme, "the kit has no tested support for it")
                raise ValueError(
                    f"broker scheme {scheme!r} is not supported ({why}); use redis://,"
                    " rediss://, amqp:// (or amqps://, pyamqp://)"
                )
            if scheme in _REDIS_SCHEMES:
                _check_redis_url(url, what="broker_url")
        return value

    @field_validator("result_backend")
    @classmethod
    def _check_result_backend(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = _scheme(value)
        if scheme in {"amqp", "pyamqp", "amqps"}:
            raise ValueError(
                "the amqp result backend was removed in Celery 5; use rpc:// (results over"
                " RabbitMQ) or redis://"
            )
        if scheme.startswith("db+"):
            if importlib.util.find_spec("sqlalchemy") is None:
                raise ValueError(f"{scheme}:// needs SQLAlchemy: pip install sqlalchemy")
            return value
        from celery.app.backends import BACKEND_ALIASES

        if scheme not in BACKEND_ALIASES and scheme not in _plugin_backends():
            raise ValueError(
                f"unknown result backend scheme {scheme!r}; Celery knows "
                f"{', '.join(sorted(BACKEND_ALIASES))} and db+<sqlalchemy-url>"
            )
        if scheme in _REDIS_SCHEMES:
            _check_redis_url(value, what="result_backend")
            if scheme == "rediss" and "ssl_cert_reqs" not in parse_qs(urlsplit(value).query):
                raise ValueError(
                    "a rediss:// result backend needs ?ssl_cert_reqs=required (or optional/"
                    "none) in the URL; Celery refuses it at the first result otherwise"
                )
        return value

    @field_validator("routers")
    @classmethod
    def _check_routers(cls, value: list[Any]) -> list[Any]:
        return [check_hook_path(v) for v in value]

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as 'UTC' or 'Europe/Paris'"
            ) from None
        return value


def _plugin_backends() -> set[str]:
    """Backends other packages register (``celery.result_backends`` entry point), e.g.
    django-celery-results' ``django-db``; Celery resolves URLs through them too."""
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group="celery.result_backends")}


def _scheme(url: str) -> str:
    return url.strip().split("://", 1)[0].lower() if "://" in url else url.strip().lower()


def _check_redis_url(url: str, *, what: str) -> None:
    parts = urlsplit(url.strip())
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"{what}: the port in {parts.netloc!r} is not a number") from None
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(f"{what}: the Redis database {db!r} must be a number, e.g. /0")
