"""The worker's one ``/metrics`` endpoint, the queue-length poller, and ``kit exporter``.

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
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from celery import bootsteps, signals

from celery_kit.metrics import KitMetrics, _AppMetrics, _state, metrics_of
from celery_kit.metrics_multiproc import (
    MULTIPROC_ENV,
    MetricsSetupError,
    compact_dead_processes,
    remove_owned_dir,
    setup_multiprocess,
)

if TYPE_CHECKING:
    from celery import Celery
    from prometheus_client import CollectorRegistry

    from celery_kit.depth import QueueDepth

__all__ = [
    "MetricsServer",
    "MetricsStep",
    "QueueLengthPoller",
    "exposition",
    "run_exporter",
]

logger = logging.getLogger(__name__)

Render = Callable[[str], tuple[bytes, str]]


def _encode(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def _multiprocess_registry(directory: str) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def exposition(app: Celery, accept_header: str = "") -> tuple[bytes, str]:
    """The app's metrics as ``(body, content_type)``, e.g. for a web app's ``/metrics``.

    Under multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before prometheus_client
    was imported, e.g. gunicorn) it sums every process of the directory; otherwise it
    serves this process's registry.
    """
    from prometheus_client import values

    metrics = metrics_of(app)
    directory = os.environ.get(MULTIPROC_ENV)
    if directory and getattr(values.ValueClass, "_multiprocess", False):
        return _encode(_multiprocess_registry(directory), accept_header)
    return _encode(metrics.registry, accept_header)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class MetricsServer:
    """A tiny threaded HTTP server answering ``GET /metrics`` with ``render(accept)``."""

    def __init__(self, render: Render, *, address: str, port: int) -> None:
        self._render = render
        self._address, self._port = address, port
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self._server.server_port if self._server is not None else self._port

    def start(self) -> int:
        """Bind and serve from a daemon thread; returns the port."""
        self._server = make_server(
            self._address,
            self._port,
            self._wsgi,
            server_class=_ThreadingServer,
            handler_class=_QuietHandler,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="celery-kit-metrics", daemon=True
        )
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop serving and close the socket."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def close_inherited(self) -> None:
        """In a forked child: close this process's copy of the listening socket."""
        if self._server is not None:
            self._server.socket.close()
            self._server = None

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO", "/") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"try /metrics\n"]
        try:
            body, content_type = self._render(environ.get("HTTP_ACCEPT", ""))
        except Exception:
            logger.exception("celery_kit metrics: scrape failed")
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"scrape failed; see the worker log\n"]
        start_response("200 OK", [("Content-Type", content_type)])
        return [body]


class QueueLengthPoller:
    """Samples queue lengths (every priority sub-queue) into the kit's gauges.

    Args:
        app: the Celery app (broker connection settings).
        metrics: whose ``queue_length``/``queue_oldest_age`` gauges to set.
        queues: the queue names, or a callable returning them at each sample.
        interval_s: seconds between samples.
        timeout_s: bound on every broker call.
    """

    def __init__(
        self,
        app: Celery,
        metrics: KitMetrics,
        *,
        queues: Iterable[str] | Callable[[], Iterable[str]],
        interval_s: float,
        timeout_s: float = 5.0,
    ) -> None:
        from celery_kit.depth import DepthReader

        self._metrics = metrics
        self._queues = queues
        self._interval_s = interval_s
        self._reader = DepthReader(app, timeout_s=timeout_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def sample_once(self) -> dict[str, QueueDepth]:
        """Ask the broker once and set the gauges; errors are logged, not raised."""
        names = list(self._queues() if callable(self._queues) else self._queues)
        try:
            depths = self._reader.read(names, oldest=True)
        except Exception as exc:
            if not self._failing:
                logger.warning("celery_kit metrics: queue lengths unavailable: %r", exc)
            self._failing = True
            return {}
        if self._failing:
            logger.info("celery_kit metrics: queue lengths available again")
        self._failing = False
        m = self._metrics
        for name, depth in depths.items():
            if depth.messages is not None:
                m.child(m.queue_length, name).set(depth.messages)
            if depth.oldest_age_s is not None or depth.messages == 0:
                m.child(m.queue_oldest_age, name).set(depth.oldest_age_s or 0.0)
        return depths

    def start(self) -> None:
        """Sample every ``interval_s`` from a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="celery-kit-queues", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and close the broker connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._reader.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self._interval_s)


def _worker_render(state: _AppMetrics) -> Render:
    lock = threading.Lock()

    def render(accept: str) -> tuple[bytes, str]:
        from celery.worker import state as worker_state

        m = _metrics(state)
        with lock:  # scrapes one at a time: compaction rewrites files
            m.child(m.tasks_active, state.hostname).set(len(worker_state.active_requests))
            m.child(m.worker_up, state.hostname).set(1)
            mp = state.multiprocess
            if mp is None or mp.directory is None:
                return _encode(m.registry, accept)
            try:
                compact_dead_processes(mp.directory)
            except Exception:
                logger.exception("celery_kit metrics: compacting %s failed", mp.directory)
            return _encode(_multiprocess_registry(mp.directory), accept)

    return render


def _metrics(state: _AppMetrics) -> KitMetrics:
    # created by the bootstep before the fork; lazily only if a test builds no step
    if state.metrics is None:
        state.metrics = KitMetrics(state.settings, registry=state.registry)
    return state.metrics


class MetricsStep(bootsteps.StartStopStep):
    """Worker bootstep (main process): multiprocess set-up, ``/metrics``, queue poller.

    Its constructor runs before the pool forks; raising there stops the worker, which is
    how a set-up that would under-count is refused.
    """

    label = "celery_kit metrics"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        from celery.concurrency.prefork import TaskPool

        app = parent.app
        state = _state(app)
        self._state = state
        if state is None:
            return
        pool_cls = parent.pool_cls
        single = not (isinstance(pool_cls, type) and issubclass(pool_cls, TaskPool))
        state.multiprocess = setup_multiprocess(state.settings, single_process=single)
        state.hostname = str(parent.hostname)
        state.main_pid = os.getpid()
        metrics_of(app)  # created now, in the main process, before the pool forks
        uid = f"celery_kit.metrics.{id(app)}"
        signals.worker_process_init.connect(
            self._in_child, weak=False, dispatch_uid=f"{uid}.worker_process_init"
        )
        signals.worker_shutdown.connect(
            self._at_exit, weak=False, dispatch_uid=f"{uid}.worker_shutdown"
        )

    def start(self, parent: Any) -> None:
        state = self._state
        if state is None:
            return
        settings = state.settings
        server = MetricsServer(_worker_render(state), address=settings.address, port=settings.port)
        try:
            port = server.start()
        except OSError as exc:
            raise MetricsSetupError(
                f"the worker's /metrics endpoint cannot listen on {settings.address}:"
                f"{settings.port} ({exc}); another worker on this host? Give each worker its"
                " own metrics.port (CELERY_KIT_METRICS__PORT), or 0 for any free port"
            ) from exc
        state.server = server
        logger.info(
            "celery_kit metrics: serving http://%s:%d/metrics (one endpoint for the whole pool)",
            settings.address,
            port,
        )
        m = _metrics(state)
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
            m = _metrics(state)
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
    from celery_kit.app import settings_of
    from celery_kit.metrics import KitMetrics

    settings = settings_of(app).metrics
    m = KitMetrics(settings, registry=registry)
    queues = list(settings.queues or app.amqp.queues)
    poller = QueueLengthPoller(app, m, queues=queues, interval_s=settings.queue_length_interval_s)
    if once:
        poller.sample_once()
        poller.stop()
        return _encode(m.registry, "")[0]
    server = MetricsServer(lambda accept: _encode(m.registry, accept), address=address, port=port)
    bound = server.start()
    poller.start()
    logger.info("celery_kit exporter: queues %s on http://%s:%d/metrics", queues, address, bound)
    try:
        while True:
            time.sleep(3600)
    finally:
        poller.stop()
        server.stop()
