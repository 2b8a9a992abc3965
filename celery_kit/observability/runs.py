"""Counting task runs (started, wait time, succeeded, run time) without Celery signals.

Celery's tracer sends ``task_prerun`` and ``task_success`` to every task as soon as one
receiver is connected (``celery/app/trace.py: build_tracer``), and each send walks the
receiver list and calls the receiver with keyword arguments. For the kit's own tasks
(``KitTask``) that is not needed: ``KitTask.__call__`` and ``KitTask.on_success`` call
the app's :class:`RunCounter` (``KitState.run_counter``) at the same two points. At worker
start, :func:`narrow_run_receivers` leaves the two receivers connected only for the tasks
that do not count themselves (e.g. ``base=celery.Task``), each as their only sender.
Failures, retries, revocations, rejections and the main process's reports (time limits,
lost workers) keep their receivers: they are rare, and some happen outside any task.
"""

from __future__ import annotations

import logging
import time
import weakref
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery import signals

from celery_kit.state import COUNTS_OWN_RUNS

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.observability.metrics import KitMetrics, MetricsState

__all__ = ["RunCounter", "counts_own_runs", "narrow_run_receivers", "queue_of", "receiver_uid"]

logger = logging.getLogger(__name__)


def receiver_uid(app: Celery, name: str) -> str:
    """``dispatch_uid`` of the metrics receiver for signal ``name`` of ``app``."""
    return f"celery_kit.metrics.{id(app)}.{name}"


def queue_of(delivery_info: Any) -> str:
    """The ``queue_name`` label: the routing key (Celery routes by queue name)."""
    if not delivery_info:
        return "unknown"
    return str(delivery_info.get("routing_key") or delivery_info.get("exchange") or "unknown")


def timestamp(value: Any) -> float | None:
    """A published-at header or an ETA as POSIX seconds (``None``: absent or unreadable)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def published_at(request: Any, header: str) -> float | None:
    """When the message of ``request`` became ready to run: its publish time (``header``),
    or its ETA if later; ``None`` without the kit's header."""
    published = timestamp(getattr(request, header, None))
    if published is None and isinstance(request.headers, dict):
        published = timestamp(request.headers.get(header))
    if published is None:
        return None
    return max(published, timestamp(request.eta) or 0.0)


def counts_own_runs(task: Any) -> bool:
    """``task`` counts its runs through ``KitState.run_counter`` (a ``KitTask``)."""
    return bool(getattr(task, COUNTS_OWN_RUNS, False))


class RunCounter:
    """``KitState.run_counter`` of one app: counts in the process that runs the task.

    Label children are looked up once per (task, hostname, queue) and kept. Each run writes
    six values to prometheus_client's memory-mapped file (the started and succeeded
    counters, and the sum and one bucket of each histogram), as the receivers did: nothing
    is held back in memory, so a pool process killed by ``SIGKILL`` has lost no count.
    """

    def __init__(self, app: Celery, state: MetricsState, header: str) -> None:
        self._app = weakref.ref(app)
        self._state = state
        self._header = header
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}

    def _labelled(self, task: Any, request: Any) -> tuple[Any, Any, Any, Any] | None:
        key = (task.name, str(request.hostname), queue_of(request.delivery_info))
        found = self._children.get(key)
        if found is None:
            if task.app is not self._app():
                return None
            m: KitMetrics = self._state.kit_metrics()
            found = self._children[key] = (
                m.child(m.started, *key),
                m.child(m.queue_wait, *key),
                m.child(m.succeeded, *key),
                m.child(m.runtime, *key),
            )
        return found

    def started(self, task: Any, request: Any) -> Any:
        """Count a start and its wait time; returns the token for :meth:`succeeded`."""
        try:
            children = self._labelled(task, request)
            if children is None:
                return None
            t0 = time.perf_counter()
            children[0].inc()
            ready = published_at(request, self._header)
            if ready is not None:
                children[1].observe(max(0.0, time.time() - ready))
            return children, t0
        except Exception:
            logger.exception("celery_kit metrics: counting a task start failed")
            return None

    def succeeded(self, task: Any, token: Any) -> None:
        """Count a success and its run time (from the start of ``__call__``)."""
        if token is None:
            return
        try:
            children, t0 = token
            children[2].inc()
            children[3].observe(time.perf_counter() - t0)
        except Exception:
            logger.exception("celery_kit metrics: counting a task success failed")


def narrow_run_receivers(app: Celery, prerun: Any, success: Any) -> int:
    """Worker start (before the pool forks): connect the ``task_prerun``/``task_success``
    receivers only for tasks of ``app`` that do not count their own runs, each with that
    task as its only sender. Returns how many tasks keep receivers."""
    app.finalize(auto=True)
    signals.task_prerun.disconnect(dispatch_uid=receiver_uid(app, "task_prerun"))
    signals.task_success.disconnect(dispatch_uid=receiver_uid(app, "task_success"))
    kept = 0
    for task in app.tasks.values():
        if counts_own_runs(task):
            continue
        for name, signal, receiver in (
            ("task_prerun", signals.task_prerun, prerun),
            ("task_success", signals.task_success, success),
        ):
            uid = f"{receiver_uid(app, name)}.{id(task)}"
            signal.connect(receiver, sender=task, weak=False, dispatch_uid=uid)
        kept += 1
    return kept
