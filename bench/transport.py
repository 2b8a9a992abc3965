"""The kit's Redis transport vs kombu's, interleaved in one run.

Per transport and round (kit, kombu, kit, kombu, ...), on a fresh private redis-server:
throughput of a prefork -c2 worker draining N no-op tasks (published while it runs),
Redis commands per task (``INFO commandstats`` deltas, publishes and acks included; calls
made inside Lua scripts count too), then an idle worker's Redis commands/s and Redis CPU.
Last, the time until another worker starts a task whose worker was SIGKILLed, with the
kit's defaults (kombu's default is derived, not waited for: 1,500 s visibility timeout
plus its sweep). Writes ``bench/results/transport.md`` and ``.json``.
``BENCH_TRANSPORT_N`` (tasks per round, 2000), ``BENCH_TRANSPORT_ROUNDS`` (3),
``BENCH_TRANSPORT_IDLE_S`` (10).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from celery_kit import Settings, make_app
from celery_kit.testing import RedisServer, WorkerFactory, wait_until

RESULTS = Path(__file__).parent / "results"
HERE = Path(__file__).parent.parent
APP = "bench._transport_app"


def _env(broker: str, transport: str, results: str) -> dict[str, str]:
    return {
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": results,
        "CELERY_KIT_BROKER__TRANSPORT": transport,
        "CELERY_KIT_HEALTH__ENABLED": "false",
        "BENCH_MARK_URL": results,
    }


def _calls(client: Any) -> int:
    return sum(int(v["calls"]) for v in client.info("commandstats").values())


def _cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _pending(client: Any) -> int:
    queued = sum(int(client.llen(k)) for k in client.keys("default*"))
    return queued + int(client.hlen("unacked"))


def _round(transport: str, n: int, idle_s: float, results: str, logs: Path) -> dict[str, Any]:
    with RedisServer() as server:
        env = _env(server.url(0), transport, results)
        workers = WorkerFactory(logs)
        try:
            workers(APP, env=env, concurrency=2, pythonpath=[str(HERE)], loglevel="INFO")
            app = make_app("bench_transport", settings=Settings(_environ=env))
            client = server.client(0)
            time.sleep(1.0)
            client.config_resetstat()
            busy0 = _cpu(client)
            started = time.perf_counter()
            for i in range(n):
                app.send_task("bench.noop", args=[i], ignore_result=True)
            wait_until(lambda: _pending(client) == 0, timeout_s=600, what="the drain", every_s=0.01)
            elapsed = time.perf_counter() - started
            calls, busy = _calls(client), _cpu(client) - busy0
            client.config_resetstat()
            cpu0 = _cpu(client)
            time.sleep(idle_s)
            idle_calls, idle_cpu = _calls(client), _cpu(client) - cpu0
            app.close()
            return {
                "transport": transport,
                "tasks_per_s": n / elapsed,
                "commands_per_task": calls / n,
                "redis_cpu_ms_per_task": 1000 * busy / n,
                "idle_commands_per_s": idle_calls / idle_s,
                "idle_redis_cpu_pct": 100 * idle_cpu / idle_s,
            }
        finally:
            workers.stop_all()


def _recovery(results: str, logs: Path) -> float:
    """Seconds from a whole-worker SIGKILL to another worker starting its task (kit defaults)."""
    import redis

    with RedisServer() as server:
        env = _env(server.url(0), "kit", results)
        marks = redis.Redis.from_url(results)
        marks.delete("starts:crash")
        workers = WorkerFactory(logs)
        try:
            first = workers(APP, env=env, concurrency=1, pythonpath=[str(HERE)])
            app = make_app("bench_transport", settings=Settings(_environ=env))
            app.send_task("bench.sleep", args=["crash", 600], ignore_result=True)
            wait_until(lambda: marks.llen("starts:crash") == 1, timeout_s=30, what="start")
            workers(APP, env=env, concurrency=1, pythonpath=[str(HERE)])
            killed = time.time()
            first.kill()
            wait_until(lambda: marks.llen("starts:crash") == 2, timeout_s=300, what="restart")
            again = float(marks.lindex("starts:crash", 1).decode().rsplit("|", 1)[1])
            app.close()
            return again - killed
        finally:
            workers.stop_all()


def main() -> None:
    """Run the interleaved rounds and the recovery measurement; write the results."""
    n = int(os.environ.get("BENCH_TRANSPORT_N", "2000"))
    rounds = int(os.environ.get("BENCH_TRANSPORT_ROUNDS", "3"))
    idle_s = float(os.environ.get("BENCH_TRANSPORT_IDLE_S", "10"))
    rows: list[dict[str, Any]] = []
    with RedisServer() as results_server, tempfile.TemporaryDirectory() as logs:
        results = results_server.url(0)
        for r in range(rounds):
            for transport in ("kit", "kombu") if r % 2 == 0 else ("kombu", "kit"):
                row = _round(transport, n, idle_s, results, Path(logs))
                print(row, flush=True)
                rows.append(row)
        recovery_s = _recovery(results, Path(logs))
    summary = {
        t: {
            key: statistics.median(row[key] for row in rows if row["transport"] == t)
            for key in (
                "tasks_per_s",
                "commands_per_task",
                "redis_cpu_ms_per_task",
                "idle_commands_per_s",
                "idle_redis_cpu_pct",
            )
        }
        for t in ("kit", "kombu")
    }
    RESULTS.mkdir(exist_ok=True)
    data = {"n": n, "rounds": rows, "median": summary, "kit_recovery_s": recovery_s}
    (RESULTS / "transport.json").write_text(json.dumps(data, indent=2) + "\n")
    kit, kombu = summary["kit"], summary["kombu"]
    lines = [
        "# Redis transport: kit vs kombu",
        "",
        f"`python -m bench transport`: prefork -c2 worker, {n} no-op tasks per round,"
        f" {rounds} interleaved rounds per transport (medians), a fresh redis-server per"
        " round. Shared, noisy 2-core machine: compare the columns, not absolute values.",
        "",
        "| | kit | kombu | kit / kombu |",
        "|---|---|---|---|",
        f"| throughput (tasks/s) | {kit['tasks_per_s']:.0f} | {kombu['tasks_per_s']:.0f}"
        f" | {kit['tasks_per_s'] / kombu['tasks_per_s']:.2f} |",
        f"| Redis commands per task (incl. inside scripts) | {kit['commands_per_task']:.1f}"
        f" | {kombu['commands_per_task']:.1f} | |",
        f"| Redis CPU per task (ms, whole drain) | {kit['redis_cpu_ms_per_task']:.3f}"
        f" | {kombu['redis_cpu_ms_per_task']:.3f} | |",
        f"| idle Redis commands/s (one worker) | {kit['idle_commands_per_s']:.1f}"
        f" | {kombu['idle_commands_per_s']:.1f} | |",
        f"| idle Redis CPU (%) | {kit['idle_redis_cpu_pct']:.2f}"
        f" | {kombu['idle_redis_cpu_pct']:.2f} | |",
        f"| whole-worker SIGKILL → task restarted elsewhere (defaults) | {recovery_s:.0f} s"
        " (measured) | 1,500 s visibility timeout + up to ~100 s sweep (derived, not waited"
        " for) | |",
        "",
        "Every round (tasks/s, in run order): "
        + ", ".join(f"{row['transport']} {row['tasks_per_s']:.0f}" for row in rows)
        + ". The spread between rounds of the same transport is larger than the difference"
        " between the medians.",
        "",
        "Round trips per task, from the code (not measured): kit 3 (publish: one pipelined"
        " LPUSH + wake-up token; take: one POP script; ack: one script), kombu 4 (LPUSH;"
        " BRPOP; MULTI/ZADD/HSET/EXEC to record it; MULTI/ZREM/HDEL/EXEC to ack). The kit's"
        " command count is higher because calls made inside its scripts count too (the"
        " POP script's EXISTS bisection, TIME, ZADD, HSET, wake-up token).",
        "",
    ]
    (RESULTS / "transport.md").write_text("\n".join(lines))
    print("\n".join(lines))
