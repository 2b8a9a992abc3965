"""The ``Settings`` sections that operate a deployment: metrics, health, Flower, traces, logs."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from celery_kit.config.sections import KitModel

__all__ = [
    "FlowerSettings",
    "HealthSettings",
    "LoggingSettings",
    "MetricsSettings",
    "TracingSettings",
    "auth_pattern_problem",
]


# fmt: off
#: celery-exporter's runtime buckets (prometheus_client's defaults), so dashboards match.
_RUNTIME_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                      7.5, 10.0)
#: Waiting in a queue lasts longer than running: buckets up to an hour.
_QUEUE_WAIT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                         300.0, 600.0, 1800.0, 3600.0)
# fmt: on
#: Label names the kit's metrics use themselves (static labels may not reuse them).
_RESERVED_LABELS = frozenset(
    {"name", "hostname", "queue_name", "exception", "reason", "state", "priority", "le", "quantile"}
)
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class MetricsSettings(KitModel):
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


class HealthSettings(KitModel):
    """``[health]``: the worker heartbeat that ``kit health --liveness/--readiness`` reads."""

    #: Keep a heartbeat (a bootstep in the worker's main process).
    enabled: bool = True
    #: Heartbeat file; ``%n`` is the worker's node name (``celery`` in ``celery@host``),
    #: ``%a`` the app's name. ``None``: ``<temp dir>/celery-kit-%a-%n.heartbeat.json``.
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


class FlowerSettings(KitModel):
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
        if (self.auth is None) != (self.auth_provider is None):
            raise ValueError(
                "flower.auth (allowed emails) and flower.auth_provider go together: with"
                " only a provider Flower lets everyone in, with only emails nobody logs in"
            )
        if self.auth is not None and (problem := auth_pattern_problem(self.auth)):
            raise ValueError(problem)
        return self


def auth_pattern_problem(pattern: str) -> str | None:
    """What is wrong with an OAuth ``--auth`` email pattern under Flower 2.2, or ``None``.

    Flower 2.2 (``flower/utils/authentication.py``) takes an exact email, ``a@x.com|b@x.com``,
    or one ``.*`` wildcard before the ``@`` (``.*@example.com``); it is not a regex, so
    anchors and backslashes are matched literally and would lock everyone out.
    """
    if not pattern.strip():
        return "flower.auth is empty; name the allowed emails, e.g. '.*@example.com'"
    if any(ch in pattern for ch in "\\^$()[] "):
        return (
            f"flower.auth {pattern!r} looks like a regex; Flower 2.2 matches exact emails"
            " ('a@x.com|b@x.com') or one wildcard before the @ ('.*@example.com')"
        )
    if pattern.count("*") > 1 or ("*" in pattern and "|" in pattern):
        return f"flower.auth {pattern!r}: use one '.*' wildcard, or a '|' list without wildcards"
    if "*" in pattern and ("*" in pattern.rsplit("@", 1)[-1] or ".*" not in pattern):
        return (
            f"flower.auth {pattern!r}: the wildcard must be '.*' before the @, e.g."
            " '.*@example.com' (a wildcard domain would admit any domain)"
        )
    return None


class TracingSettings(KitModel):
    """``[tracing]``: OpenTelemetry spans for publish and run (``celery_kit[otel]``).

    The exporter comes from OpenTelemetry's own ``OTEL_*`` environment variables.
    """

    #: Trace tasks (opentelemetry-instrumentation-celery, set up per pool process).
    enabled: bool = False
    #: ``service.name`` when ``OTEL_SERVICE_NAME`` is unset (``None``: the app's name).
    service_name: str | None = None
    #: Link the run span to the publish span instead of making it its child.
    span_links: bool = False
    #: Longest wait for pending spans when a pool process exits or a task is killed.
    flush_timeout_s: float = Field(default=5.0, gt=0)


class LoggingSettings(KitModel):
    """``[logging]``: worker log records that say which task they belong to."""

    #: Add ``task_id``, ``task_name``, ``queue``, ``retries`` (and ``trace_id``/``span_id``
    #: with tracing on) to every record logged inside a task, on the worker's handlers.
    task_context: bool = True
    #: Worker log format: Celery's ``"text"``, or ``"json"`` (``celery_kit[json-logs]``).
    format: Literal["text", "json"] = "text"
