"""Prometheus task metrics from Celery signals, correct under the prefork pool.

Each event is counted by the process that sees it (publisher, worker main process, pool
process) into prometheus_client's multiprocess directory (:mod:`.metrics_multiproc`); the
worker's main process serves the sum (:mod:`.metrics_exporter`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery_kit.depth import PUBLISHED_AT_HEADER
from celery_kit.exceptions import ConfigError

if TYPE_CHECKING:
    from celery import Celery
    from prometheus_client import CollectorRegistry

    from celery_kit.config import MetricsSettings, Settings
    from celery_kit.metrics_multiproc import Multiprocess

__all__ = ["UNREGISTERED", "KitMetrics", "install_metrics", "metrics_of", "wrap_sender"]

logger = logging.getLogger(__name__)

#: Attribute on the app holding its :class:`_AppMetrics`.
_ATTR = "_celery_kit_metrics"
#: Task ids whose queue the main process remembers for failures it reports itself.
_RECENT_TASKS = 4096
#: Label value for tasks the worker does not know (never the sender's free-form name).
UNREGISTERED = "unregistered"


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
        self.rejected = counter("rejected", "Task messages the worker rejected.")
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
        self.queue_oldest_age = Gauge(
            f"{p}_queue_oldest_message_age_seconds",
            "Age of the oldest waiting message (Redis, kit-stamped messages only).",
            ("queue_name", *static),
            multiprocess_mode="livemostrecent",
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
class _AppMetrics:
    """Per-app state (on the app object, never a module global)."""

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


def _state(app: Celery) -> _AppMetrics | None:
    found: _AppMetrics | None = getattr(app, _ATTR, None)
    return found


def metrics_of(app: Celery) -> KitMetrics:
    """The app's :class:`KitMetrics` in this process, created on first use.

    Raises:
        ConfigError: metrics are not enabled on the app (``metrics.enabled``).
    """
    state = _state(app)
    if state is None:
        raise ConfigError(
            f"metrics are not enabled on app {app.main!r}: set metrics.enabled = true"
            " (CELERY_KIT_METRICS__ENABLED=1)"
        )
    if state.metrics is None:
        state.metrics = KitMetrics(state.settings, registry=state.registry)
    return state.metrics


# -- installation and receivers ------------------------------------------------------------


def install_metrics(
    app: Celery, settings: Settings, *, registry: CollectorRegistry | None = None
) -> None:
    """Count ``app``'s tasks (if ``metrics.enabled``) and serve them from its workers.

    Imports nothing from prometheus_client: that happens in the worker bootstep (after
    multiprocess mode is set up) or at the first publish.

    Args:
        app: a ``make_app`` app.
        settings: its settings.
        registry: registry for producer-side metrics; a private one if omitted.
    """
    if not settings.metrics.enabled:
        return
    from celery import signals

    from celery_kit.metrics_exporter import MetricsStep

    setattr(app, _ATTR, _AppMetrics(settings.metrics, registry))
    hooks = _Hooks(app)
    uid = f"celery_kit.metrics.{id(app)}"
    for name, signal, receiver in (
        ("task_received", signals.task_received, hooks.on_received),
        ("task_prerun", signals.task_prerun, hooks.on_prerun),
        ("task_success", signals.task_success, hooks.on_success),
        ("task_failure", signals.task_failure, hooks.on_failure),
        ("task_retry", signals.task_retry, hooks.on_retry),
        ("task_revoked", signals.task_revoked, hooks.on_revoked),
        ("task_rejected", signals.task_rejected, hooks.on_rejected),
        ("task_unknown", signals.task_unknown, hooks.on_unknown),
        ("worker_process_shutdown", signals.worker_process_shutdown, hooks.on_process_shutdown),
    ):
        signal.connect(receiver, weak=False, dispatch_uid=f"{uid}.{name}")
    app.steps["worker"].add(MetricsStep)


def wrap_sender(app: Celery, send: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap Celery's ``send_task_message``: stamp the publish time; count ``sent``.

    Called by ``KitAMQP`` for each app. The stamp (header ``kit_published_at``) is always
    written: queue wait times and oldest-message ages need it. ``sent`` is counted only
    with metrics on.
    """
    state = _state(app)
    default_queue = str(app.conf.task_default_queue)

    def send_task_message(
        producer: Any,
        name: str,
        message: Any,
        exchange: Any = None,
        routing_key: str | None = None,
        queue: Any = None,
        **options: Any,
    ) -> Any:
        now = time.time()
        message.headers[PUBLISHED_AT_HEADER] = now
        extra = options.get("headers")
        if extra and PUBLISHED_AT_HEADER in extra:  # a retry copies its request's headers
            options["headers"] = {**extra, PUBLISHED_AT_HEADER: now}
        result = send(producer, name, message, exchange, routing_key, queue, **options)
        if state is not None:
            try:
                qname = queue if isinstance(queue, str) else getattr(queue, "name", None)
                if not qname:
                    qname = routing_key or (default_queue if exchange is None else str(exchange))
                m = metrics_of(app)
                m.child(m.sent, name, state.hostname, qname).inc()
            except Exception:
                logger.exception("celery_kit metrics: could not count a sent task")
        return result

    return send_task_message


def _queue(delivery_info: Any) -> str:
    if not delivery_info:
        return "unknown"
    return str(delivery_info.get("routing_key") or delivery_info.get("exchange") or "unknown")


def _seen(ids: OrderedDict[str, None], task_id: str) -> bool:
    """Remember ``task_id`` (bounded); tell whether it was already there."""
    if task_id in ids:
        return True
    ids[task_id] = None
    if len(ids) > _RECENT_TASKS:
        ids.popitem(last=False)
    return False


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


class _Hooks:
    """Signal receivers for one app (holds it weakly; Celery signals are process-wide)."""

    def __init__(self, app: Celery) -> None:
        self._app = weakref.ref(app)

    def _for(self, app: Any) -> tuple[_AppMetrics, KitMetrics] | None:
        mine = self._app()
        if mine is None or app is not mine:
            return None
        state = _state(mine)
        return None if state is None else (state, metrics_of(mine))

    # pool child ---------------------------------------------------------------------------

    def on_prerun(self, sender: Any = None, task: Any = None, **_: Any) -> None:
        try:
            found = self._for(getattr(task, "app", None))
            if found is None:
                return
            m = found[1]
            req = task.request
            labels = (task.name, str(req.hostname), _queue(req.delivery_info))
            m.child(m.started, *labels).inc()
            req._kit_t0 = time.perf_counter()
            published = _ts(getattr(req, PUBLISHED_AT_HEADER, None))
            if published is None and isinstance(req.headers, dict):
                published = _ts(req.headers.get(PUBLISHED_AT_HEADER))
            if published is not None:
                ready = max(published, _ts(req.eta) or 0.0)
                m.child(m.queue_wait, *labels).observe(max(0.0, time.time() - ready))
        except Exception:
            logger.exception("celery_kit metrics: task_prerun receiver failed")

    def on_success(self, sender: Any = None, runtime: float | None = None, **_: Any) -> None:
        try:
            found = self._for(getattr(sender, "app", None))
            if found is None:
                return
            m = found[1]
            req = sender.request
            labels = (sender.name, str(req.hostname), _queue(req.delivery_info))
            m.child(m.succeeded, *labels).inc()
            if runtime is None and getattr(req, "_kit_t0", None) is not None:
                runtime = time.perf_counter() - req._kit_t0
            if runtime is not None:
                m.child(m.runtime, *labels).observe(runtime)
        except Exception:
            logger.exception("celery_kit metrics: task_success receiver failed")

    def on_retry(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        try:
            found = self._for(getattr(sender, "app", None))
            if found is None:
                return
            m = found[1]
            host = str(getattr(request, "hostname", None) or found[0].hostname)
            queue = _queue(getattr(request, "delivery_info", None))
            m.child(m.retried, sender.name, host, queue).inc()
        except Exception:
            logger.exception("celery_kit metrics: task_retry receiver failed")

    # pool child, or main process for time limits and lost workers ------------------------

    def on_failure(
        self, sender: Any = None, task_id: Any = None, exception: Any = None, **_: Any
    ) -> None:
        try:
            found = self._for(getattr(sender, "app", None))
            if found is None:
                return
            state, m = found
            if state.main_pid == os.getpid() and _seen(state.failed, str(task_id)):
                # Celery 5.7 reports a hard time limit twice in the main process: from
                # Request.on_failure (billiard's error callback) and Request.on_timeout.
                return
            req = sender.request
            info = getattr(req, "delivery_info", None)
            if info:
                queue, host = _queue(info), str(req.hostname or state.hostname)
            else:  # reported by the main process: no request on the stack
                queue, host = state.recent.pop(str(task_id), "unknown"), state.hostname
            kind = type(exception).__name__ if exception is not None else "unknown"
            m.child(m.failed, sender.name, host, kind, queue).inc()
        except Exception:
            logger.exception("celery_kit metrics: task_failure receiver failed")

    # worker main process ------------------------------------------------------------------

    def on_received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        try:
            found = self._for(getattr(getattr(request, "task", None), "app", None))
            if found is None:
                return
            state, m = found
            queue = _queue(request.delivery_info)
            m.child(m.received, request.name, state.hostname, queue).inc()
            recent = state.recent
            recent[str(request.id)] = queue
            if len(recent) > _RECENT_TASKS:
                recent.popitem(last=False)
        except Exception:
            logger.exception("celery_kit metrics: task_received receiver failed")

    def on_revoked(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        try:
            found = self._for(getattr(sender, "app", None))
            if found is None:
                return
            state, m = found
            queue = _queue(getattr(request, "delivery_info", None))
            m.child(m.revoked, sender.name, state.hostname, queue).inc()
        except Exception:
            logger.exception("celery_kit metrics: task_revoked receiver failed")

    def on_rejected(self, sender: Any = None, message: Any = None, **_: Any) -> None:
        try:
            found = self._for(getattr(sender, "app", None))
            if found is None:
                return
            state, m = found
            name = (getattr(message, "headers", None) or {}).get("task")
            if name not in sender.app.tasks:
                name = UNREGISTERED
            queue = _queue(getattr(message, "delivery_info", None))
            m.child(m.rejected, str(name), state.hostname, queue).inc()
        except Exception:
            logger.exception("celery_kit metrics: task_rejected receiver failed")

    def on_unknown(self, sender: Any = None, message: Any = None, **_: Any) -> None:
        try:
            found = self._for(getattr(sender, "app", None))
            if found is None:
                return
            state, m = found
            queue = _queue(getattr(message, "delivery_info", None))
            m.child(m.failed, UNREGISTERED, state.hostname, "NotRegistered", queue).inc()
        except Exception:
            logger.exception("celery_kit metrics: task_unknown receiver failed")

    def on_process_shutdown(self, pid: int | None = None, **_: Any) -> None:
        try:
            app = self._app()
            state = _state(app) if app is not None else None
            mp = state.multiprocess if state is not None else None
            if mp is not None and mp.directory and pid is not None:
                from celery_kit.metrics_multiproc import mark_dead

                mark_dead(pid, mp.directory)
        except Exception:
            logger.exception("celery_kit metrics: worker_process_shutdown receiver failed")
