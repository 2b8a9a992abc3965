"""The worker's metrics bootstep (one ``/metrics`` for the whole pool) and ``kit exporter``.

The endpoint runs in the worker's main process (a bootstep). Every scrape builds a fresh
registry over the multiprocess directory, so it sums what every pool process counted,
including processes that have exited (recycled by ``max_tasks_per_child``, killed by a
time limit). Queue lengths come from one poller: ``celery -A proj kit exporter`` for a
deployment, or the worker itself with ``metrics.queue_length_in_worker``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import bootsteps, signals

from celery_kit.console import refusals
from celery_kit.observability.metrics import KitMetrics, MetricsState, metrics_of, metrics_state
from celery_kit.observability.multiproc import (
    MetricsSetupError,
    compact_dead_processes,
    remove_owned_dir,
    setup_multiprocess,
)
from celery_kit.observability.poller import QueueLengthPoller
from celery_kit.observability.runs import narrow_run_receivers
from celery_kit.observability.server import MetricsServer, Render, encode, multiprocess_registry
from celery_kit.state import settings_of

if TYPE_CHECKING:
    from celery import Celery
    from prometheus_client import CollectorRegistry

    from celery_kit.config.operations import MetricsSettings

__all__ = ["MetricsStep", "run_exporter"]

logger = logging.getLogger(__name__)


def _worker_render(state: MetricsState) -> Render:
    lock = threading.Lock()

    def render(accept: str) -> tuple[bytes, str]:
        # deferred: the worker's machinery, loaded only where a worker scrapes
        from celery.worker import state as worker_state

        m = state.kit_metrics()
        with lock:  # scrapes one at a time: compaction rewrites files
            m.child(m.tasks_active, state.hostname).set(len(worker_state.active_requests))
            m.child(m.worker_up, state.hostname).set(1)
            mp = state.multiprocess
            if mp is None or mp.directory is None:
                return encode(m.registry, accept)
            try:
                compact_dead_processes(mp.directory)
            except Exception:
                logger.exception("celery_kit metrics: compacting %s failed", mp.directory)
            return encode(multiprocess_registry(mp.directory), accept)

    return render


class MetricsStep(bootsteps.StartStopStep):
    """Worker bootstep (main process): multiprocess set-up, ``/metrics``, queue poller.

    Its constructor runs before the pool forks; raising there stops the worker, which is
    how a set-up that would under-count is refused.
    """

    label = "celery_kit metrics"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        # deferred: the worker's machinery (billiard), loaded only in a worker
        from celery.concurrency.prefork import TaskPool

        app = parent.app
        state = metrics_state(app)
        self._state = state
        if state is None:
            return
        pool_cls = parent.pool_cls
        single = not (isinstance(pool_cls, type) and issubclass(pool_cls, TaskPool))
        with refusals():  # one short block and exit 2, not a traceback
            state.multiprocess = setup_multiprocess(state.settings, single_process=single)
        state.hostname = str(parent.hostname)
        state.main_pid = os.getpid()
        metrics_of(app)  # created now, in the main process, before the pool forks
        if state.run_receivers is not None:  # KitTasks count their runs without signals
            narrow_run_receivers(app, *state.run_receivers)
        uid = f"celery_kit.metrics.{id(app)}"
        signals.worker_process_init.connect(
            self._in_child, weak=False, dispatch_uid=f"{uid}.worker_process_init"
        )
        signals.worker_shutdown.connect(
            self._at_exit, weak=False, dispatch_uid=f"{uid}.worker_shutdown"
        )

    @staticmethod
    def _listen(server: MetricsServer, settings: MetricsSettings) -> int:
        try:
            return server.start()
        except OSError as exc:
            raise MetricsSetupError(
                f"the worker's /metrics endpoint cannot listen on {settings.address}:"
                f"{settings.port} ({exc}); another worker on this host? Give each worker its"
                " own metrics.port (CELERY_KIT_METRICS__PORT), or 0 for any free port"
            ) from exc

    def start(self, parent: Any) -> None:
        state = self._state
        if state is None:
            return
        settings = state.settings
        server = MetricsServer(_worker_render(state), address=settings.address, port=settings.port)
        with refusals():  # one short block and exit 2, not "Unrecoverable error" + traceback
            port = self._listen(server, settings)
        state.server = server
        logger.info(
            "celery_kit metrics: serving http://%s:%d/metrics (one endpoint for the whole pool)",
            settings.address,
            port,
        )
        m = state.kit_metrics()
        m.child(m.worker_up, state.hostname).set(1)
        if settings.queue_length_in_worker:
            app = parent.app

            def consumed() -> list[str]:
                return list(settings.queues or app.amqp.queues.consume_from or app.amqp.queues)

            poller = QueueLengthPoller(
                app, m, queues=consumed, interval_s=settings.queue_length_interval_s
            )
            poller.start()
            state.poller = poller

    def stop(self, parent: Any) -> None:
        state = self._state
        if state is None:
            return
        with contextlib.suppress(Exception):
            m = state.kit_metrics()
            m.child(m.worker_up, state.hostname).set(0)
        poller, state.poller = state.poller, None
        if poller is not None:
            poller.stop()
        server, state.server = state.server, None
        if server is not None:
            server.stop()

    terminate = stop

    def _in_child(self, **_: Any) -> None:
        try:
            if self._state is not None and self._state.server is not None:
                self._state.server.close_inherited()
                self._state.server = None
            if self._state is not None:
                self._state.poller = None  # its thread exists in the parent only
        except Exception:
            logger.exception("celery_kit metrics: worker_process_init receiver failed")

    def _at_exit(self, **_: Any) -> None:
        try:  # after the pool has stopped: nobody writes to the directory anymore
            if self._state is not None:
                remove_owned_dir(self._state.multiprocess)
        except Exception:
            logger.exception("celery_kit metrics: removing the metrics directory failed")


def _dead_letter_count(app: Celery) -> Callable[[], int] | None:
    """The DLQ size for ``celery_dlq_entries`` (``None``: DLQ off or no kit Redis)."""
    from celery_kit.coordination.client import redis_url
    from celery_kit.coordination.dlq import DeadLetterStore
    from celery_kit.exceptions import ConfigError

    settings = settings_of(app)
    try:
        redis_url(settings)
    except ConfigError:
        return None
    return DeadLetterStore(app).count if settings.dlq.enabled else None


def run_exporter(
    app: Celery,
    *,
    address: str,
    port: int,
    once: bool = False,
    registry: CollectorRegistry | None = None,
) -> bytes | None:
    """``kit exporter``: sample every queue of ``app`` and serve the lengths.

    Args:
        app: a ``make_app`` app with ``metrics.enabled``.
        address: listen address.
        port: listen port.
        once: sample once and return the exposition instead of serving.
        registry: registry for the gauges (a fresh one if omitted).
    """
    settings = settings_of(app).metrics
    m = KitMetrics(settings, registry=registry)
    queues = list(settings.queues or app.amqp.queues)
    poller = QueueLengthPoller(
        app,
        m,
        queues=queues,
        interval_s=settings.queue_length_interval_s,
        dead_letters=_dead_letter_count(app),
    )
    if once:
        poller.sample_once()
        poller.stop()
        return encode(m.registry, "")[0]
    server = MetricsServer(lambda accept: encode(m.registry, accept), address=address, port=port)
    bound = server.start()
    poller.start()
    logger.info("celery_kit exporter: queues %s on http://%s:%d/metrics", queues, address, bound)
    try:
        while True:
            time.sleep(3600)
    finally:
        poller.stop()
        server.stop()
