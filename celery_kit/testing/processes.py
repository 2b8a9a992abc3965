"""Process helpers of the test harness: polling, process state from /proc, stopping groups."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "TAIL_LINES",
    "log_tail",
    "popen",
    "process_alive",
    "scan_processes",
    "stop_process",
    "wait_exited",
    "wait_until",
]

#: Lines of a log quoted in harness errors.
TAIL_LINES = 60


def log_tail(path: Path) -> str:
    """The last ``TAIL_LINES`` lines of ``path`` (or a note that it does not exist)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-TAIL_LINES:])
    except OSError:
        return f"<no log at {path}>"


def _stat(pid: int | str) -> tuple[str, int, int] | None:
    """``(state, ppid, pgrp)`` of a process from /proc, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def scan_processes(field: int, value: int) -> list[int]:
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


def popen(argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log``."""
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kwargs
        )


def wait_exited(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
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


def stop_process(
    proc: subprocess.Popen[bytes], sig: int | None, *, group: bool, timeout_s: float
) -> int:
    """Send ``sig`` (to the group if ``group``) and wait; then SIGKILL the group and reap."""
    if proc.returncode is None:
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                (os.killpg if group else os.kill)(proc.pid, sig)
            wait_exited(proc, timeout_s)
        # Not reaped yet, so the pgid (= proc.pid) cannot have been recycled: safe to kill.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    code = proc.wait()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if not any(process_alive(pid) for pid in scan_processes(2, proc.pid)):
            break
        time.sleep(0.02)
    return code
