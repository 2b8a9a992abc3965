"""The ``/metrics`` HTTP endpoint and the exposition of a registry or multiprocess directory."""

from __future__ import annotations

import logging
import os
import socketserver
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from celery_kit.observability.metrics import metrics_of
from celery_kit.observability.multiproc import MULTIPROC_ENV

if TYPE_CHECKING:
    from celery import Celery
    from prometheus_client import CollectorRegistry

__all__ = ["MetricsServer", "Render", "encode", "exposition", "multiprocess_registry"]

logger = logging.getLogger(__name__)

Render = Callable[[str], tuple[bytes, str]]


def encode(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """``registry`` in the exposition format ``accept`` asks for: ``(body, content_type)``."""
    # deferred: prometheus_client picks multiprocess mode when first imported (see multiproc)
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def multiprocess_registry(directory: str) -> CollectorRegistry:
    """A fresh registry summing every process's files in ``directory``."""
    # deferred: prometheus_client picks multiprocess mode when first imported (see multiproc)
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
    # deferred: prometheus_client picks multiprocess mode when first imported (see multiproc)
    from prometheus_client import values

    metrics = metrics_of(app)
    directory = os.environ.get(MULTIPROC_ENV)
    if directory and getattr(values.ValueClass, "_multiprocess", False):
        return encode(multiprocess_registry(directory), accept_header)
    return encode(metrics.registry, accept_header)


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
