"""Helpers of the observability integration tests: env, scraping, probes, a freezable proxy."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from celery_kit import Settings, make_app
from celery_kit.testing import wait_until as wait_for

APPS = str(Path(__file__).parents[1] / "apps")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def obs_env(
    broker: str,
    state: str,
    tmp: Path,
    *,
    metrics_port: int | None = None,
    soft: float = 5,
    hard: float = 6,
    interval_s: float = 1.0,
    max_age_s: float = 4.0,
    **extra: str,
) -> dict[str, str]:
    """Worker env: metrics on (multiprocess dir, as the launcher prepares it), fast heartbeat."""
    env = {
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": state,
        "KIT_TEST_STATE_URL": state,
        "CELERY_KIT_TASKS__SOFT_TIME_LIMIT_S": str(soft),
        "CELERY_KIT_TASKS__TIME_LIMIT_S": str(hard),
        "CELERY_KIT_TASKS__MAX_COUNTDOWN_S": "1",
        "CELERY_KIT_TASKS__RETRY_BACKOFF_MAX_S": "1",
        "CELERY_KIT_BROKER__VISIBILITY_MARGIN_S": "5",
        "CELERY_KIT_HEALTH__HEARTBEAT_FILE": str(tmp / "heartbeat-%n.json"),
        "CELERY_KIT_HEALTH__INTERVAL_S": str(interval_s),
        "CELERY_KIT_HEALTH__MAX_AGE_S": str(max_age_s),
        "CELERY_KIT_HEALTH__BROKER_TIMEOUT_S": str(min(0.5, interval_s / 2)),
    }
    if metrics_port is not None:
        mp = tmp / "metrics-mp"
        mp.mkdir(exist_ok=True)
        env |= {
            "CELERY_KIT_METRICS__ENABLED": "1",
            "CELERY_KIT_METRICS__PORT": str(metrics_port),
            "PROMETHEUS_MULTIPROC_DIR": str(mp),
        }
    env.update(extra)
    return env


def producer(env: dict[str, str]) -> Celery:
    """The test's own app, configured like the worker's (never os.environ)."""
    settings_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    return make_app("kit_observe", settings=Settings(_environ=settings_env))


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``http://127.0.0.1:port/metrics`` by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return parse(text)


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[Any, float], metric: str, /, **labels: str) -> float:
    """Sum of the samples named ``metric`` whose labels include ``labels`` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and wanted <= set(ls))


def run_probe(kind: str, heartbeat: Path | str) -> tuple[int, str]:
    """The stand-alone probe, exactly as a Kubernetes exec probe runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "celery_kit.health", f"--{kind}", "--file", str(heartbeat)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.returncode, done.stdout + done.stderr


def listening_pids(port: int) -> set[int]:
    """Pids holding a LISTEN socket on ``port`` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(fields[9])
    owners = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        owners.add(int(pid))
    return owners


def result_of(app: Celery, task_id: str, *, timeout_s: float) -> Any:
    """Poll the result backend (no pub/sub subscription: safe when that Redis goes away)."""

    def ready() -> Any:
        meta = app.backend.get_task_meta(task_id, cache=False)
        return meta if meta["status"] in ("SUCCESS", "FAILURE") else None

    meta = wait_for(ready, timeout_s=timeout_s, what=f"the result of {task_id}")
    assert meta["status"] == "SUCCESS", meta
    return meta["result"]


class FreezableProxy:
    """A TCP proxy whose established connections can be frozen without being closed.

    A frozen connection stays open but carries no byte either way, like a flow dropped by
    a NAT or firewall: the client sees a half-open socket. ``freeze(polling_only=True)``
    freezes only the connections that sent a ``BRPOP`` or ``BZPOPMIN`` (a Redis consumer's
    polling connection: kombu's transport or the kit's), the symptom of a consumer waiting
    forever on a dead socket while the rest of the worker works.
    """

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._conns: list[_ProxiedConnection] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            conn = _ProxiedConnection(client, upstream)
            with self._lock:
                self._conns.append(conn)
            conn.start()

    def freeze(self, *, polling_only: bool = False) -> int:
        """Stop established connections from carrying data; returns how many."""
        with self._lock:
            chosen = [c for c in self._conns if c.saw_brpop or not polling_only]
        for conn in chosen:
            conn.gate.clear()
        return len(chosen)

    def thaw(self) -> None:
        """Let the frozen connections carry their held data again."""
        with self._lock:
            for conn in self._conns:
                conn.gate.set()

    def close(self) -> None:
        self._closed = True
        self.thaw()
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                conn.close()


class _ProxiedConnection:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.gate = threading.Event()
        self.gate.set()
        self.saw_brpop = False

    def start(self) -> None:
        for src, dst, outgoing in (
            (self.client, self.upstream, True),
            (self.upstream, self.client, False),
        ):
            threading.Thread(target=self._pump, args=(src, dst, outgoing), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, outgoing: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if outgoing and (b"BRPOP" in data.upper() or b"BZPOPMIN" in data.upper()):
                    self.saw_brpop = True
                self.gate.wait()
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def status_server(app: Celery) -> Iterator[int]:
    """A web-style status endpoint: ``GET /status/<task id>`` → ``task_status`` as JSON."""
    import json
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from celery_kit.tasks.progress import task_status

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        task_id = environ["PATH_INFO"].rsplit("/", 1)[-1]
        body = json.dumps(task_status(app, task_id)).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, wsgi, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
