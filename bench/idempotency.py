"""bench.idempotency: CPU and wall time of an idempotent task's Redis work, in one process.

The sequence the guards run for one task, against a private redis-server (loopback):
claim, register the lease with the lease thread, drop it, record the result. Three ways:

* ``script``: each script through redis-py's ``Script`` (pool checkout per call) and the
  completion waited for: the kit before the pinned connection;
* ``pinned``: the kit's pinned connection (``ScriptConn``), completion waited for;
* ``pinned_async``: pinned, completion sent without waiting (its reply read with the next
  claim): what the kit does now.

Between two tasks the loop spins ``BENCH_IDEM_GAP_US`` (200 µs) of CPU, standing in for
the rest of a task's work in a pool process (Celery's tracer, the result going back to the
main process, the next request): without it a reply sent without waiting could not arrive
before the next claim. The spin is subtracted from both figures.

Modes are interleaved over rounds; CPU is this process's (all threads), read with
``time.process_time``. Reported as median [min-max] over rounds, with the load average.
Environment: ``BENCH_IDEM_N`` (tasks per round, 3000), ``BENCH_IDEM_REPS`` (7).
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from celery_kit.config.settings import Settings
from celery_kit.coordination.client import KitRedis, make_client
from celery_kit.coordination.idempotency import Claim
from celery_kit.coordination.keys import Keys
from celery_kit.coordination.pinned import ScriptConn
from celery_kit.tasks.completion import record_success
from celery_kit.testing import RedisServer

RESULTS = Path(__file__).parent / "results"
N = int(os.environ.get("BENCH_IDEM_N", "3000"))
REPS = int(os.environ.get("BENCH_IDEM_REPS", "7"))
GAP_S = int(os.environ.get("BENCH_IDEM_GAP_US", "200")) / 1e6
MODES = ("script", "pinned", "pinned_async")


def _one(kr: KitRedis, mode: str, i: int, tag: str) -> None:
    claim = Claim(f"bench:idem:{tag}:{i}", uuid.uuid4().hex, kr)
    claim.claim(task_id=str(i), lease_s=30)
    handle = kr.keeper.keep(lambda: claim.renew(30), ttl_s=30, what="bench claim")
    kr.keeper.drop(handle)
    if mode == "pinned_async":
        record_success(kr, claim, {"ok": i}, lease_s=30, ttl_s=600, task_id=str(i), what="bench")
    else:
        claim.complete({"ok": i}, result_ttl_s=600, task_id=str(i))


def _spin(seconds: float) -> float:
    """Burn about ``seconds`` of CPU; return the CPU time it took."""
    start = time.process_time()
    end = start + seconds
    while time.process_time() < end:
        pass
    return time.process_time() - start


def _round(kr: KitRedis, mode: str, n: int) -> tuple[float, float]:
    tag = uuid.uuid4().hex[:8]
    spun = 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(n):
        _one(kr, mode, i, tag)
        spun += _spin(GAP_S)
    if kr.pinned is not None:
        kr.pinned.settle()  # the last reply belongs to this round
    cpu, wall = time.process_time() - cpu0 - spun, time.perf_counter() - wall0 - spun
    return cpu / n * 1e6, wall / n * 1e6


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]"


def main() -> None:
    """Run the modes interleaved; write bench/results/idempotency.{md,json}."""
    load_before = os.getloadavg()
    rows: dict[str, dict[str, list[float]]] = {m: {"cpu": [], "wall": []} for m in MODES}
    with RedisServer() as server:
        settings = Settings(_environ={})
        krs: dict[str, KitRedis] = {}
        for mode in MODES:
            client = make_client(server.url(1), settings)
            pinned = None if mode == "script" else ScriptConn(client)
            krs[mode] = KitRedis(client=client, keys=Keys("bench"), pinned=pinned)
            _round(krs[mode], mode, 300)  # warm: scripts cached, connection open
        for r in range(REPS):
            order = MODES if r % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                cpu, wall = _round(krs[mode], mode, N)
                rows[mode]["cpu"].append(cpu)
                rows[mode]["wall"].append(wall)
    load = [round(x, 2) for x in load_before], [round(x, 2) for x in os.getloadavg()]
    lines = [
        "# bench.idempotency",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, {N} tasks per round,"
        f" {REPS} rounds, {os.cpu_count()} CPUs; load average before {load[0]}, after"
        f" {load[1]} (the machine is shared). Claim + lease register/drop + completion per"
        f" task, one process, private redis-server on loopback, {GAP_S * 1e6:.0f} µs of CPU"
        " spun between tasks and subtracted; median [min-max] µs per task.",
        "",
        "| mode | CPU µs/task | wall µs/task |",
        "|---|---:|---:|",
        *(f"| {m} | {_stats(rows[m]['cpu'])} | {_stats(rows[m]['wall'])} |" for m in MODES),
        "",
    ]
    report: dict[str, Any] = {"n": N, "reps": REPS, "load": load, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "idempotency.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "idempotency.md").write_text("\n".join(lines))
    print("\n".join(lines))
