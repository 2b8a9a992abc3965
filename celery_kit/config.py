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
import zoneinfo
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from celery_kit import defaults as d
from celery_kit.conf import build_conf
from celery_kit.sources import Origin, load_layers, validate_into

__all__ = [
    "BrokerSettings",
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


class Settings(BaseSettings):
    """Everything celery_kit needs to build an app, validated once.

    ``Settings(**values)`` reads the environment and the TOML file like any
    pydantic-settings object (keyword arguments win). Pass ``_config=PATH`` to name the
    TOML file and ``_environ=MAPPING`` to read a mapping instead of ``os.environ``.

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
    #: Any Celery setting by its lowercase name, applied last and shown as "override".
    celery_overrides: dict[str, Any] = Field(default_factory=dict)

    _origins: dict[tuple[str, ...], Origin] = PrivateAttr(default_factory=dict)

    def __init__(
        self,
        _config: str | os.PathLike[str] | None = None,
        _environ: Mapping[str, str] | None = None,
        **values: Any,
    ) -> None:
        merged, origins = load_layers(type(self), config=_config, environ=_environ, kwargs=values)
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

        if scheme not in BACKEND_ALIASES:
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
