"""Signal receivers that count tasks into the kit's metrics, and their installation.

Celery signals are process-wide; each app's receivers hold it weakly and ignore other apps.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from celery import signals

from celery_kit.observability.exporter import MetricsStep
from celery_kit.observability.metrics import (
    UNREGISTERED,
    KitMetrics,
    MetricsState,
    metrics_state,
)
from celery_kit.observability.multiproc import mark_dead
from celery_kit.observability.runs import (
    RunCounter,
    counts_own_runs,
    published_at,
    queue_of,
    receiver_uid,
)
from celery_kit.state import state_of
from celery_kit.topology.publish import PUBLISHED_AT_HEADER

if TYPE_CHECKING:
    from celery import Celery
    from prometheus_client import CollectorRegistry

    from celery_kit.config.settings import Settings

__all__ = ["install_metrics"]

logger = logging.getLogger(__name__)

#: Task ids whose queue the main process remembers for failures it reports itself.
_RECENT_TASKS = 4096


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
    state = state_of(app)
    metrics = state.put(MetricsState(settings.metrics, registry))
    hooks = _Hooks(app)
    metrics.run_receivers = (hooks.on_prerun, hooks.on_success)
    state.sent_hooks.append(hooks.on_sent)
    state.run_counter = RunCounter(app, metrics, PUBLISHED_AT_HEADER)
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
        # task_prerun/task_success: for every task until the worker starts, then only for
        # tasks that do not count themselves (runs.narrow_run_receivers)
        signal.connect(receiver, weak=False, dispatch_uid=receiver_uid(app, name))
    app.steps["worker"].add(MetricsStep)


def _reject_reason(exc: Any) -> str:
    """The ``reason`` label of a rejection reported through ``task_rejected``."""
    if exc is None:
        return "unknown_format"  # Consumer.on_unknown_message
    from kombu.exceptions import ContentDisallowed

    from celery_kit.exceptions import MalformedMessageError, PoisonMessageError

    if isinstance(exc, MalformedMessageError):
        return "malformed"  # the kit's envelope guard
    if isinstance(exc, PoisonMessageError):
        return "worker_lost"  # the kit's envelope guard, a task that killed its worker
    return "content_disallowed" if isinstance(exc, ContentDisallowed) else "invalid"


def _seen(ids: OrderedDict[str, None], task_id: str) -> bool:
    """Remember ``task_id`` (bounded); tell whether it was already there."""
    if task_id in ids:
        return True
    ids[task_id] = None
    if len(ids) > _RECENT_TASKS:
        ids.popitem(last=False)
    return False


class _Hooks:
    """Signal receivers for one app (holds it weakly; Celery signals are process-wide)."""

    def __init__(self, app: Celery) -> None:
        self._app = weakref.ref(app)

    def _for(self, app: Any) -> tuple[MetricsState, KitMetrics] | None:
        mine = self._app()
        if mine is None or app is not mine:
            return None
        state = metrics_state(mine)
        return None if state is None else (state, state.kit_metrics())

    # publisher (any process) ----------------------------------------------------------------

    def on_sent(self, name: str, queue: str) -> None:
        """Sent hook (``KitState.sent_hooks``): count a published task message."""
        try:
            app = self._app()
            state = metrics_state(app) if app is not None else None
            if state is None:
                return
            m = state.kit_metrics()
            m.child(m.sent, name, state.hostname, queue).inc()
        except Exception:
            logger.exception("celery_kit metrics: could not count a sent task")

    # pool child ---------------------------------------------------------------------------

    def on_prerun(self, sender: Any = None, task: Any = None, **_: Any) -> None:
        try:
            found = self._for(getattr(task, "app", None))
            if found is None or counts_own_runs(task):
                return
            m = found[1]
            req = task.request
            labels = (task.name, str(req.hostname), queue_of(req.delivery_info))
            m.child(m.started, *labels).inc()
            req._kit_t0 = time.perf_counter()
            ready = published_at(req, PUBLISHED_AT_HEADER)
            if ready is not None:
                m.child(m.queue_wait, *labels).observe(max(0.0, time.time() - ready))
        except Exception:
            logger.exception("celery_kit metrics: task_prerun receiver failed")

    def on_success(self, sender: Any = None, runtime: float | None = None, **_: Any) -> None:
        try:
            found = self._for(getattr(sender, "app", None))
            if found is None or counts_own_runs(sender):
                return
            m = found[1]
            req = sender.request
            labels = (sender.name, str(req.hostname), queue_of(req.delivery_info))
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
            queue = queue_of(getattr(request, "delivery_info", None))
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
                queue, host = queue_of(info), str(req.hostname or state.hostname)
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
            queue = queue_of(request.delivery_info)
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
            queue = queue_of(getattr(request, "delivery_info", None))
            m.child(m.revoked, sender.name, state.hostname, queue).inc()
        except Exception:
            logger.exception("celery_kit metrics: task_revoked receiver failed")

    def on_rejected(
        self, sender: Any = None, message: Any = None, exc: Any = None, **_: Any
    ) -> None:
        try:
            found = self._for(getattr(sender, "app", None))
            if found is None:
                return
            state, m = found
            headers = getattr(message, "headers", None)
            name = headers.get("task") if isinstance(headers, dict) else None
            if not isinstance(name, str) or name not in sender.app.tasks:
                name = UNREGISTERED
            queue = queue_of(getattr(message, "delivery_info", None))
            m.child(m.rejected, name, state.hostname, queue, _reject_reason(exc)).inc()
        except Exception:
            logger.exception("celery_kit metrics: task_rejected receiver failed")

    def on_unknown(self, sender: Any = None, message: Any = None, **_: Any) -> None:
        try:
            found = self._for(getattr(sender, "app", None))
            if found is None:
                return
            state, m = found
            queue = queue_of(getattr(message, "delivery_info", None))
            m.child(m.failed, UNREGISTERED, state.hostname, "NotRegistered", queue).inc()
        except Exception:
            logger.exception("celery_kit metrics: task_unknown receiver failed")

    def on_process_shutdown(self, pid: int | None = None, **_: Any) -> None:
        try:
            app = self._app()
            state = metrics_state(app) if app is not None else None
            mp = state.multiprocess if state is not None else None
            if mp is not None and mp.directory and pid is not None:
                mark_dead(pid, mp.directory)
        except Exception:
            logger.exception("celery_kit metrics: worker_process_shutdown receiver failed")
