"""The kit's Prometheus metrics and their per-app state (``MetricsState``, in ``KitState``).

Each event is counted by the process that sees it (publisher, worker main process, pool
process) into prometheus_client's multiprocess directory (:mod:`.multiproc`), from the
receivers in :mod:`.hooks` and, for ``KitTask`` runs, the run counter in :mod:`.runs`; the
worker's main process serves the sum (:mod:`.exporter`).
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery_kit.exceptions import ConfigError
from celery_kit.state import find_state

if TYPE_CHECKING:
    from celery import Celery
    from prometheus_client import CollectorRegistry

    from celery_kit.config.operations import MetricsSettings
    from celery_kit.observability.multiproc import Multiprocess

__all__ = [
    "REJECT_REASONS",
    "UNREGISTERED",
    "KitMetrics",
    "MetricsState",
    "metrics_of",
    "metrics_state",
]

#: Label value for tasks the worker does not know (never the sender's free-form name).
UNREGISTERED = "unregistered"
#: Values of the ``reason`` label of ``*_task_rejected_total``: the kit's envelope guard
#: (``malformed``, ``worker_lost``: dead-lettered at delivery) and Celery's own refusals
#: (``unknown_format``, ``content_disallowed``, ``invalid``).
REJECT_REASONS = frozenset(
    {"malformed", "worker_lost", "unknown_format", "content_disallowed", "invalid"}
)


class KitMetrics:
    """The kit's metrics (celery-exporter's names and labels), in one registry.

    Args:
        settings: the ``[metrics]`` settings (prefix, static labels, buckets).
        registry: where the metrics are registered; a fresh ``CollectorRegistry`` if
            omitted. Under multiprocess mode values go to the directory regardless.
    """

    def __init__(
        self, settings: MetricsSettings, *, registry: CollectorRegistry | None = None
    ) -> None:
        # deferred: prometheus_client picks multiprocess mode when first imported (see multiproc)
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        r, p = self.registry, settings.prefix
        self._static = tuple(settings.labels.values())
        static = tuple(settings.labels)
        task = ("name", "hostname", "queue_name", *static)

        def counter(what: str, doc: str) -> Any:
            return Counter(f"{p}_task_{what}_total", doc, task, registry=r)

        self.sent = counter("sent", "Task messages published (counted by the producer).")
        self.received = counter("received", "Tasks received by the worker.")
        self.started = counter("started", "Tasks started in a pool process.")
        self.succeeded = counter("succeeded", "Tasks that returned a result.")
        self.failed = Counter(
            f"{p}_task_failed_total",
            "Tasks that failed, by exception class (time-limit kills and lost workers too).",
            ("name", "hostname", "exception", "queue_name", *static),
            registry=r,
        )
        # celery-exporter's rejected counter plus ``reason`` (bounded: REJECT_REASONS).
        # Selectors on name/hostname/queue_name keep matching; sums gain one series per reason.
        self.rejected = Counter(
            f"{p}_task_rejected_total",
            "Task messages the worker rejected or dead-lettered without running, by reason.",
            ("name", "hostname", "queue_name", "reason", *static),
            registry=r,
        )
        self.revoked = counter("revoked", "Tasks revoked.")
        self.retried = counter("retried", "Tasks that raised Retry.")
        self.runtime = Histogram(
            f"{p}_task_runtime",
            "Run time of successful tasks, seconds.",
            task,
            buckets=settings.runtime_buckets_s,
            registry=r,
        )
        self.queue_wait = Histogram(
            f"{p}_task_queue_wait_time",
            "Seconds from publish (or ETA) to start, from the kit's publish timestamp header.",
            task,
            buckets=settings.queue_wait_buckets_s,
            registry=r,
        )
        # Gauges are set only by the worker's main process (or the exporter); "live" modes
        # drop a dead process's values, "max"/"mostrecent" keep one value per label set.
        self.worker_up = Gauge(
            f"{p}_worker_up",
            "1 while the worker's main process serves metrics.",
            ("hostname", *static),
            multiprocess_mode="livemax",
            registry=r,
        )
        self.tasks_active = Gauge(
            f"{p}_worker_tasks_active",
            "Tasks running in the worker's pool.",
            ("hostname", *static),
            multiprocess_mode="livemax",
            registry=r,
        )
        self.queue_length = Gauge(
            f"{p}_queue_length",
            "Messages waiting in a queue (every priority sub-queue on Redis).",
            ("queue_name", *static),
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        # A new name, not a label on queue_length: celery-exporter's series keeps meaning
        # the whole queue, and sum by (queue_name) over this one equals it on Redis.
        self.queue_length_by_priority = Gauge(
            f"{p}_queue_length_by_priority",
            "Messages waiting in a queue at one kit priority (0-9, higher is more urgent);"
            " Redis only: RabbitMQ cannot count a queue's messages by priority.",
            ("queue_name", "priority", *static),
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.queue_oldest_age = Gauge(
            f"{p}_queue_oldest_message_age_seconds",
            "Age of the oldest waiting message (Redis, kit-stamped messages only).",
            ("queue_name", *static),
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.dlq_entries = Gauge(
            f"{p}_dlq_entries",
            "Dead letters kept (set by the exporter, `kit exporter`).",
            static,
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.queue_depth = Gauge(
            f"{p}_queue_depth",
            'Messages of a queue by state: "ready" (waiting in the queue, as queue_length)'
            ' and "delayed" (waiting in the delay set for their countdown/ETA).',
            ("queue_name", "state", *static),
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.delay_lag = Histogram(
            f"{p}_delay_lag_seconds",
            "Seconds from a delayed message's due time to its move into its queue (mover).",
            static,
            buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
            registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels, *static)``, cached (this runs once per task)."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels, *self._static)
        return found


@dataclass
class MetricsState:
    """Everything metrics keep for one app (a part of its ``KitState``, never a global)."""

    settings: MetricsSettings
    registry: CollectorRegistry | None
    hostname: str = field(default_factory=socket.gethostname)
    multiprocess: Multiprocess | None = None
    metrics: KitMetrics | None = None
    #: task id → queue, for failures the main process reports (time limits, lost workers).
    recent: OrderedDict[str, str] = field(default_factory=OrderedDict)
    #: The worker's main process, and the ids of failures it already counted there.
    main_pid: int | None = None
    failed: OrderedDict[str, None] = field(default_factory=OrderedDict)
    #: The exporter's HTTP server and queue poller (worker main process only).
    server: Any = None
    poller: Any = None
    #: The ``task_prerun`` and ``task_success`` receivers, for tasks that are no ``KitTask``.
    run_receivers: tuple[Any, Any] | None = None

    def kit_metrics(self) -> KitMetrics:
        """The metrics in this process, created on first use (the worker bootstep creates
        them in the main process before the pool forks)."""
        if self.metrics is None:
            self.metrics = KitMetrics(self.settings, registry=self.registry)
        return self.metrics


def metrics_state(app: Any) -> MetricsState | None:
    """The app's :class:`MetricsState`; ``None`` when metrics are off or it is no kit app."""
    state = find_state(app)
    return state.get(MetricsState) if state is not None else None


def metrics_of(app: Celery) -> KitMetrics:
    """The app's :class:`KitMetrics` in this process, created on first use.

    Raises:
        ConfigError: metrics are not enabled on the app (``metrics.enabled``).
    """
    state = metrics_state(app)
    if state is None:
        raise ConfigError(
            f"metrics are not enabled on app {app.main!r}: set metrics.enabled = true"
            " (CELERY_KIT_METRICS__ENABLED=1)"
        )
    return state.kit_metrics()
