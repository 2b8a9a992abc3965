"""What several benches read the same way: CPU seconds from /proc and a Redis backlog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int, *, with_reaped: bool = False) -> float:
    """CPU seconds of ``pid`` (and of its reaped children, e.g. replaced pool processes)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / _TICKS


def tree_cpu_s(worker: Any) -> float:
    """A worker's CPU so far: main process, live pool processes and reaped ones."""
    return cpu_s(worker.pid, with_reaped=True) + sum(cpu_s(p) for p in worker.pool_pids())


def remaining(client: redis.Redis, names: list[str]) -> tuple[int, int]:
    """(messages waiting in the lists ``names``, messages delivered but not acked)."""
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.llen(name)
        pipe.hlen("unacked")
        *lengths, unacked = pipe.execute()
    return sum(int(n) for n in lengths), int(unacked)


def wait_drained(client: redis.Redis, names: list[str], deadline: float, what: str) -> None:
    """Poll until nothing waits or is unacked; ``TimeoutError`` at ``deadline`` (perf_counter)."""
    while time.perf_counter() < deadline:
        waiting, unacked = remaining(client, names)
        if waiting == 0 and unacked == 0:
            return
        time.sleep(0.002)
    raise TimeoutError(f"{what}: backlog not drained")


RESULTS = Path(__file__).resolve().parent / "results"


def write_results(stem: str, data: Any, markdown: str, *, show: bool = True) -> None:
    """``bench/results/<stem>.json`` and ``.md``; the page is printed unless ``show`` is off."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown)
    if show:
        print(markdown)


def json_child(code: str, env: dict[str, str], *, timeout_s: float, cwd: Any = None) -> Any:
    """Run ``code`` in a fresh interpreter; its last line of output, parsed as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])
