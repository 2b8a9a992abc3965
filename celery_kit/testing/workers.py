"""Real ``celery worker`` subprocesses for tests, each the leader of its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from celery_kit.testing.processes import (
    TAIL_LINES,
    log_tail,
    popen,
    process_alive,
    scan_processes,
    stop_process,
    wait_exited,
)

__all__ = [
    "AMQP_URL_ENV",
    "HEARTBEAT_FILE_ENV",
    "WorkerFactory",
    "WorkerProcess",
    "WorkerStartError",
]

AMQP_URL_ENV = "CELERY_KIT_TEST_AMQP_URL"


class WorkerStartError(RuntimeError):
    """A worker exited or timed out before the awaited log line; the message has its log tail.

    Args:
        message: What went wrong.
        log_path: The worker's combined stdout/stderr log.
    """

    def __init__(self, message: str, *, log_path: Path) -> None:
        self.log_path = log_path
        self.log_tail = log_tail(log_path)
        tail = f"--- last {TAIL_LINES} lines of {log_path} ---\n{self.log_tail}"
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
            return sorted(pid for pid in scan_processes(1, self.pid) if process_alive(pid))
        children: set[int] = set()
        for tid in os.listdir(f"/proc/{self.pid}/task"):  # billiard may fork from other threads
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{self.pid}/task/{tid}/children").read_text()
                children.update(map(int, text.split()))
        return sorted(pid for pid in children if process_alive(pid))

    def is_alive(self) -> bool:
        """Tell whether the main worker process is still running."""
        return not wait_exited(self._proc, 0.0)

    def terminate(self, *, timeout_s: float = 10.0) -> int:
        """Warm shutdown: SIGTERM the main process, SIGKILL the group after ``timeout_s``.

        Returns:
            The exit code (negative signal number if killed).
        """
        return stop_process(self._proc, signal.SIGTERM, group=False, timeout_s=timeout_s)

    def kill(self) -> None:
        """SIGKILL the whole process group (main process and pool) and wait until it is gone."""
        stop_process(self._proc, None, group=True, timeout_s=0.0)

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
        proc = popen(argv, log_path, env=child_env, cwd=cwd, start_new_session=True)
        worker = WorkerProcess(proc, hostname=f"{name}@{socket.gethostname()}", log_path=log_path)
        self.workers.append(worker)
        outcome = worker._poll_log(f"{worker.hostname} ready.", ready_timeout_s)
        if outcome == "found":
            return worker
        code = stop_process(proc, None, group=True, timeout_s=0.0)
        raise WorkerStartError(
            f"celery -A {app} worker ({worker.hostname}): {outcome} (exit code {code})",
            log_path=log_path,
        )

    def stop_all(self, *, timeout_s: float = 10.0) -> None:
        """SIGTERM the group of every worker still running, SIGKILL it after ``timeout_s``, reap."""
        for worker in self.workers:
            stop_process(worker._proc, signal.SIGTERM, group=True, timeout_s=timeout_s)
