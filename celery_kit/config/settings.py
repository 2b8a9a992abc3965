"""``Settings``: the one typed, frozen, validated configuration object of celery_kit.

Sources, highest first: keyword arguments > environment (``CELERY_KIT_*``, ``__`` for
nesting, plus Celery's own ``CELERY_BROKER_URL``/``CELERY_RESULT_BACKEND``) > a TOML file
(``config=`` or ``CELERY_KIT_CONFIG``) > the defaults in :mod:`celery_kit.config.defaults`.
Loading and origin tracking live in :mod:`.sources`; the sections in :mod:`.sections` and
:mod:`.operations`; the translation to Celery keys (and every cross-field rule on the
effective values) in :mod:`.celery_conf`.
"""

from __future__ import annotations

import importlib.util
import os
import zoneinfo
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import parse_qs, urlsplit

from celery.app.backends import BACKEND_ALIASES
from pydantic import Field, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from celery_kit.config import defaults as d
from celery_kit.config.celery_conf import build_conf
from celery_kit.config.delays import DelaysSettings
from celery_kit.config.deploy import DeploySettings
from celery_kit.config.operations import (
    FlowerSettings,
    HealthSettings,
    LoggingSettings,
    MetricsSettings,
    TracingSettings,
)
from celery_kit.config.profiles import WorkerProfile
from celery_kit.config.schedules import BeatSettings
from celery_kit.config.sections import (
    BrokerSettings,
    DlqSettings,
    IdempotencySettings,
    LocksSettings,
    RedisSettings,
    RetrySettings,
    SerializationSettings,
    TasksSettings,
    WorkerSettings,
)
from celery_kit.config.sources import FrameworkLayer, Origin, load_layers, validate_into
from celery_kit.config.topology import QueueSpec, RouteSpec, check_hook_path, default_queues
from celery_kit.config.urls import (
    AMQP_SCHEMES,
    REDIS_SCHEMES,
    SUPPORTED_BROKER_SCHEMES,
    UNSUPPORTED_BROKERS,
    check_redis_url,
)
from celery_kit.config.urls import (
    scheme as url_scheme,
)
from celery_kit.masking import mask

__all__ = ["Settings"]


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

    def __repr_args__(self) -> Any:
        """``repr``/``str`` show secrets masked (URL passwords, secret-named fields)."""
        for name, value in super().__repr_args__():
            yield name, mask(value, key=name or "")

    broker_url: str = "redis://127.0.0.1:6379/0"
    #: ``None``: the broker's Redis when the broker is Redis, else results are disabled.
    result_backend: str | None = None
    timezone: str = d.DEFAULT_TIMEZONE
    tasks: TasksSettings = Field(default_factory=TasksSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    serialization: SerializationSettings = Field(default_factory=SerializationSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    dlq: DlqSettings = Field(default_factory=DlqSettings)
    idempotency: IdempotencySettings = Field(default_factory=IdempotencySettings)
    locks: LocksSettings = Field(default_factory=LocksSettings)
    delays: DelaysSettings = Field(default_factory=DelaysSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    flower: FlowerSettings = Field(default_factory=FlowerSettings)
    #: Input of ``kit render`` (image, namespace, replicas, alert thresholds).
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    #: Periodic tasks and the one active scheduler (docs/beat.md).
    beat: BeatSettings = Field(default_factory=BeatSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
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
        # celery_kit.config.sources merges env and TOML itself (it must know where every value
        # came from); pydantic-settings only validates the merged result.
        return (init_settings,)

    # -- derived facts -----------------------------------------------------------------

    @property
    def broker_scheme(self) -> str:
        """Scheme of the (first) broker URL, e.g. ``redis`` or ``amqp``."""
        return url_scheme(self.broker_url.split(";")[0])

    @property
    def is_redis_broker(self) -> bool:
        """True when the broker is Redis (visibility timeout applies)."""
        return self.broker_scheme in REDIS_SCHEMES

    @property
    def uses_kit_transport(self) -> bool:
        """True when the broker is Redis and the kit's transport consumes from it."""
        return self.is_redis_broker and self.broker.transport == "kit"

    @property
    def uses_delay_set(self) -> bool:
        """True when long countdowns/ETAs wait in the delay set (kit transport on Redis)."""
        return self.uses_kit_transport and self.delays.enabled

    @property
    def is_amqp_broker(self) -> bool:
        """True when the broker is RabbitMQ (``consumer_timeout`` applies)."""
        return self.broker_scheme in AMQP_SCHEMES

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
            scheme = url_scheme(url)
            if scheme not in SUPPORTED_BROKER_SCHEMES:
                why = UNSUPPORTED_BROKERS.get(scheme, "the kit has no tested support for it")
                raise ValueError(
                    f"broker scheme {scheme!r} is not supported ({why}); use redis://,"
                    " rediss://, amqp:// (or amqps://, pyamqp://)"
                )
            if scheme in REDIS_SCHEMES:
                check_redis_url(url, what="broker_url")
        return value

    @field_validator("result_backend")
    @classmethod
    def _check_result_backend(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = url_scheme(value)
        if scheme in {"amqp", "pyamqp", "amqps"}:
            raise ValueError(
                "the amqp result backend was removed in Celery 5; use rpc:// (results over"
                " RabbitMQ) or redis://"
            )
        if scheme.startswith("db+"):
            if importlib.util.find_spec("sqlalchemy") is None:
                raise ValueError(f"{scheme}:// needs SQLAlchemy: pip install sqlalchemy")
            return value
        if scheme not in BACKEND_ALIASES and scheme not in _plugin_backends():
            raise ValueError(
                f"unknown result backend scheme {scheme!r}; Celery knows "
                f"{', '.join(sorted(BACKEND_ALIASES))} and db+<sqlalchemy-url>"
            )
        if scheme in REDIS_SCHEMES:
            check_redis_url(value, what="result_backend")
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
    return {ep.name for ep in entry_points(group="celery.result_backends")}
