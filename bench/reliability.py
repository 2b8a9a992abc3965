"""bench.reliability: what idempotency keys, locks and the global rate limit cost.

One run, on private redis-servers (never the machine's 6379):

1. **Round trips** per task of each helper, counted for real: real prefork workers use a
   dedicated kit Redis whose every command is read with ``MONITOR`` (script-internal
   commands, shown as ``lua``, excluded), grouped by script; ``INFO commandstats``
   (``evalsha`` calls) cross-checks the count.
2. **Added latency** per task: each helper's Redis work called in-process, and
   ``task.apply()`` through ``KitTask`` with the helper on vs off.
3. **Throughput** of a no-op task through a real prefork worker (2 processes): plain
   Celery with its defaults, plain Celery with the kit's settings, the kit with helpers
   off, and each helper on; repetitions interleaved, medians reported; plus the task's
   runtime in the pool process as Celery itself logs it ("succeeded in X s").

Writes ``bench/results/reliability.md`` and ``.json``. ``BENCH_RELIABILITY_N`` (tasks per
throughput run, default 1500) and ``BENCH_RELIABILITY_REPS`` (default 4) shrink it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import re
import signal
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celery
import redis

from bench._proc import cpu_s, tree_cpu_s
from bench._reliability_apps import KIT_VARIANTS, build
from celery_kit.coordination import idempotency, ratelimit
from celery_kit.coordination.client import kit_redis
from celery_kit.coordination.idempotency import Claim
from celery_kit.coordination.locks import Lock, _RedisLock
from celery_kit.coordination.ratelimit import RateLimiter
from celery_kit.testing import RedisServer, WorkerFactory, WorkerProcess

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
N = int(os.environ.get("BENCH_RELIABILITY_N", "1500"))
REPS = int(os.environ.get("BENCH_RELIABILITY_REPS", "4"))
RT_TASKS = 200
LATENCY_ITERATIONS = 2000

#: Script name by SHA-1, to name what MONITOR saw.
SCRIPTS = {
    "idempotency claim": idempotency._CLAIM,
    "idempotency complete": idempotency._COMPLETE,
    "idempotency release": idempotency._RELEASE,
    "idempotency reserve (publish)": idempotency._RESERVE,
    "lock acquire": _RedisLock.LUA_ACQUIRE,
    "lock release": _RedisLock.LUA_RELEASE_SCRIPT,
    "lock renew": _RedisLock.LUA_REACQUIRE_SCRIPT,
    "rate take": ratelimit._TAKE,
}
SHA = {hashlib.sha1(src.encode()).hexdigest(): name for name, src in SCRIPTS.items()}


def _env(broker: str, kit_redis_url: str | None = None) -> dict[str, str]:
    env = {"CELERY_BROKER_URL": broker, "CELERY_KIT_BROKER__VISIBILITY_MARGIN_S": "60"}
    if kit_redis_url:
        env["CELERY_KIT_REDIS__URL"] = kit_redis_url
    return env


def _lists(client: redis.Redis, queue: str) -> list[bytes]:
    """The Redis lists holding ``queue`` (one per priority step with the kit's topology)."""
    return [k for k in client.scan_iter(match=f"{queue}*") if client.type(k) == b"list"]


def _drain(client: redis.Redis, queue: str, *, timeout_s: float = 300) -> None:
    """Wait until ``queue`` is empty and nothing is unacknowledged (late ack: all ran)."""
    keys = _lists(client, queue)
    deadline = time.monotonic() + timeout_s
    while sum(int(client.llen(k)) for k in keys) + int(client.hlen("unacked")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"queue {queue} did not drain")
        time.sleep(0.005)


class _Offsets:
    """Distinct task arguments per run, so idempotency keys and locks never repeat."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, n: int) -> range:
        start, self.next = self.next, self.next + n
        return range(start, start + n)


Run = tuple[Callable[[int], Any], str, redis.Redis, WorkerProcess, int]


def _tree_cpu_s(worker: WorkerProcess, redis_pid: int) -> float:
    """CPU used so far by the worker (main, live and reaped pool processes) and Redis."""
    return tree_cpu_s(worker) + cpu_s(redis_pid)


def _one_run(run: Run, ids: range, others: list[WorkerProcess]) -> tuple[float, float]:
    """Publish with every worker stopped, then time the worker draining alone.

    Returns:
        (tasks/s, CPU µs per task used by the worker's processes and redis-server).
    """
    send, queue, broker, worker, redis_pid = run
    idle = [w for w in others if w is not worker]
    for w in (worker, *idle):
        os.killpg(w.pid, signal.SIGSTOP)  # main process and pool: one process group
    try:
        for i in ids:
            send(i)
    finally:
        cpu_before = _tree_cpu_s(worker, redis_pid)
        started = time.perf_counter()
        os.killpg(worker.pid, signal.SIGCONT)
    try:
        _drain(broker, queue)
    finally:
        for w in idle:
            os.killpg(w.pid, signal.SIGCONT)
    elapsed = time.perf_counter() - started
    cpu = _tree_cpu_s(worker, redis_pid) - cpu_before
    return len(ids) / elapsed, cpu / len(ids) * 1e6


def throughput(runs: dict[str, Run], offsets: _Offsets) -> dict[str, dict[str, Any]]:
    """Worker throughput and CPU per task per variant: REPS interleaved rounds, median."""
    workers = list({id(r[3]): r[3] for r in runs.values()}.values())
    for run in runs.values():  # warm: imports, script loads, connections
        _one_run(run, offsets.take(50), workers)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(REPS):
        order = list(runs)
        random.shuffle(order)
        for name in order:
            rate, cpu = _one_run(runs[name], offsets.take(N), workers)
            rates[name].append(rate)
            cpus[name].append(cpu)
            print(f"  {name}: {rate:.0f} tasks/s, {cpu:.0f} µs CPU/task", flush=True)
    return {
        name: {
            "median_per_s": statistics.median(rates[name]),
            "samples_per_s": rates[name],
            "cpu_us_per_task": statistics.median(cpus[name]),
            "cpu_samples_us": cpus[name],
        }
        for name in runs
    }


_RUNTIME = re.compile(r"Task (\S+)\[[^\]]+\] succeeded in ([0-9.e-]+)s")


def pool_runtimes(*workers: WorkerProcess) -> dict[str, float]:
    """Median runtime (µs) of each task name in the pool, from Celery's own log lines."""
    seen: dict[str, list[float]] = {}
    for worker in workers:
        for name, seconds in _RUNTIME.findall(worker.log_text()):
            seen.setdefault(name, []).append(float(seconds) * 1e6)
    return {name: statistics.median(v) for name, v in seen.items()}


def latency(app: celery.Celery, plain_conf: celery.Celery) -> dict[str, dict[str, float]]:
    """Microseconds per task of each helper's Redis work, and of apply() through KitTask."""
    kr = kit_redis(app)
    limiter = RateLimiter("bench-latency", "1000000/s", resources=kr)
    tag = uuid.uuid4().hex[:6]

    def claim_complete(i: int) -> None:
        claim = Claim(kr.keys.idempotency("bench", f"{tag}:{i}"), uuid.uuid4().hex, kr)
        claim.claim(task_id=str(i), lease_s=30)
        claim.complete(None, result_ttl_s=600, task_id=str(i))

    def lock_cycle(i: int) -> None:
        lock = Lock(f"{tag}:{i}", ttl_s=30, resources=kr)
        lock.acquire()
        lock.release()

    cases: dict[str, Callable[[int], Any]] = {
        "PING (one round trip, reference)": lambda i: kr.client.ping(),
        "idempotency: claim + complete": claim_complete,
        "lock: acquire + release (renewal registered)": lock_cycle,
        "rate limit: take a token": lambda i: limiter.try_acquire(max_wait_s=600),
        "apply(): plain Celery task": lambda i: plain_conf.tasks["bench.plain_conf"].apply((i,)),
    }
    for name in KIT_VARIANTS:
        task = app.tasks[name]
        cases[f"apply(): kit {name}"] = lambda i, task=task: task.apply((f"{tag}{i}",))
    out: dict[str, dict[str, float]] = {}
    for name, fn in cases.items():
        for i in range(100):
            fn(-i - 1)  # warm
        times = []
        for i in range(LATENCY_ITERATIONS):
            t0 = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - t0) * 1e6)
        times.sort()
        out[name] = {
            "mean_us": statistics.fmean(times),
            "p50_us": times[len(times) // 2],
            "p99_us": times[int(len(times) * 0.99)],
        }
        print(f"  {name}: {out[name]['p50_us']:.0f} µs p50", flush=True)
    return out


class _Monitor(threading.Thread):
    """Records every command a Redis server receives (MONITOR), with ECHO phase markers."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.events: list[dict[str, Any]] = []
        self.stopping = False
        self.ready = threading.Event()

    def run(self) -> None:
        with self.client.monitor() as monitor:
            self.ready.set()
            while not self.stopping:
                self.events.append(monitor.next_command())

    def stop(self) -> None:
        self.stopping = True
        self.client.echo("bench:end")
        self.join(10)


def round_trips(
    app: celery.Celery, monitor: _Monitor, kit: redis.Redis, broker: redis.Redis, offsets: _Offsets
) -> dict[str, dict[str, Any]]:
    """Commands per task on the kit Redis, per variant, from MONITOR and commandstats."""
    out: dict[str, dict[str, Any]] = {}
    for name in KIT_VARIANTS:
        task = app.tasks[name]
        for i in offsets.take(20):  # warm: the worker's script cache and connections
            task.apply_async((i,))
        _drain(broker, "default")
        before = kit.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        kit.echo(f"bench:start:{name}")
        for i in offsets.take(RT_TASKS):
            task.apply_async((i,))
        _drain(broker, "default")
        kit.echo(f"bench:stop:{name}")
        after = kit.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        out[name] = {"evalsha_per_task": (after - before) / RT_TASKS}
    time.sleep(0.2)
    monitor.stop()
    current: str | None = None
    counts: dict[str, Counter[str]] = {name: Counter() for name in KIT_VARIANTS}
    for event in monitor.events:
        command = str(event.get("command", ""))
        if command.startswith("ECHO bench:start:"):
            current = command.split(":", 2)[2]
            continue
        if command.startswith("ECHO bench:stop:") or command.startswith("INFO"):
            current = None if command.startswith("ECHO") else current
            continue
        if current is None or event.get("client_type") == "lua":
            continue
        words = command.split()
        label = words[0].upper()
        if label == "EVALSHA" and len(words) > 1:
            label = SHA.get(words[1], f"EVALSHA {words[1][:8]}")
        counts[current][label] += 1
    for name, counter in counts.items():
        out[name]["by_command_per_task"] = {k: v / RT_TASKS for k, v in sorted(counter.items())}
        out[name]["round_trips_per_task"] = sum(counter.values()) / RT_TASKS
        print(f"  {name}: {out[name]['round_trips_per_task']:.2f} round trips/task", flush=True)
    return out


def main() -> None:
    """Run the three measurements and write bench/results/reliability.{md,json}."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-reliability-"))
    for sub in ("broker", "kit"):
        (workdir / sub).mkdir()
    factory = WorkerFactory(workdir)
    started = time.time()
    with (
        RedisServer(workdir=workdir / "broker") as server,
        RedisServer(workdir=workdir / "kit") as kit_server,
    ):
        broker_url = server.url(0)
        broker = server.client(0)
        env = _env(broker_url)
        common = {"pythonpath": [ROOT], "cwd": ROOT, "concurrency": 2}
        print("starting workers", flush=True)
        try:
            plain_worker = factory(
                "bench._reliability_worker",
                env={**env, "BENCH_APP": "plain"},
                queues=["plain"],
                **common,
            )
            conf_env = _env(server.url(2))  # same queue name as the kit: another db
            conf_worker = factory(
                "bench._reliability_worker",
                env={**conf_env, "BENCH_APP": "plain_conf"},
                queues=["default"],
                **common,
            )
            kit_worker = factory(
                "bench._reliability_worker",
                env={**env, "BENCH_APP": "kit"},
                queues=["default"],
                **common,
            )
            kit_app = build("kit", environ=env)
            plain = build("plain", environ=env)
            plain_conf = build("plain_conf", environ=conf_env)
            offsets = _Offsets()
            runs: dict[str, Run] = {
                "plain Celery (its defaults)": (
                    plain.tasks["bench.plain"].delay,
                    "plain",
                    broker,
                    plain_worker,
                    server.pid,
                ),
                "plain Celery + kit settings": (
                    plain_conf.tasks["bench.plain_conf"].delay,
                    "default",
                    server.client(2),
                    conf_worker,
                    server.pid,
                ),
            }
            labels = {
                "bench.celery_base": "kit app, celery.Task base (no KitTask)",
                "bench.off": "kit, helpers off",
                "bench.idem": "kit + idempotency_key",
                "bench.idem_dedupe": "kit + idempotency_key + dedupe_enqueue",
                "bench.lock": "kit + lock",
                "bench.rate": "kit + rate",
                "bench.all": "kit + all three",
            }
            for name, label in labels.items():
                runs[label] = (kit_app.tasks[name].delay, "default", broker, kit_worker, server.pid)
            print(f"throughput: {N} no-op tasks per run, {REPS} rounds", flush=True)
            tput = throughput(runs, offsets)
            runtimes = pool_runtimes(plain_worker, conf_worker, kit_worker)
            task_of = {"plain Celery (its defaults)": "bench.plain"}
            task_of["plain Celery + kit settings"] = "bench.plain_conf"
            task_of.update({label: name for name, label in labels.items()})
            for label, row in tput.items():
                row["pool_runtime_p50_us"] = runtimes.get(task_of[label])
        finally:
            factory.stop_all()
        print("latency (in-process)", flush=True)
        lat = latency(kit_app, plain_conf)
        print("round trips (MONITOR on a dedicated kit Redis)", flush=True)
        kit_url = kit_server.url(0)
        rt_env = _env(broker_url, kit_url)
        monitor = _Monitor(kit_url)
        monitor.start()
        monitor.ready.wait(10)
        rt_factory = WorkerFactory(workdir)
        rt_factory(
            "bench._reliability_worker",
            env={**rt_env, "BENCH_APP": "kit"},
            queues=["default"],
            **common,
        )
        try:
            rts = round_trips(
                build("kit", environ=rt_env), monitor, kit_server.client(0), broker, offsets
            )
        finally:
            rt_factory.stop_all()
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)) + " UTC",
        "duration_s": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "versions": {"celery": celery.__version__, "redis-py": redis.__version__},
        "n_per_run": N,
        "rounds": REPS,
        "throughput": tput,
        "latency": lat,
        "round_trips": {labels[k]: v for k, v in rts.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reliability.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "reliability.md").write_text(render(report))
    print((RESULTS / "reliability.md").read_text())


def render(report: dict[str, Any]) -> str:
    """The markdown report, with the goals checked against the figures."""
    tput = report["throughput"]
    off, off_cpu = (
        tput["kit, helpers off"]["median_per_s"],
        tput["kit, helpers off"]["cpu_us_per_task"],
    )
    idem = tput["kit + idempotency_key"]
    worker_rt = report["round_trips"]["kit + idempotency_key"]["round_trips_per_task"]
    cpu_cost = idem["cpu_us_per_task"] / off_cpu - 1
    wall_change = idem["median_per_s"] / off - 1
    lines = [
        "# bench.reliability",
        "",
        f"{report['when']}, {report['duration_s']} s, {report['machine']['cpus']} CPUs,"
        f" Python {report['machine']['python']}, Celery {report['versions']['celery']},"
        f" redis-py {report['versions']['redis-py']}. Private redis-servers; one prefork"
        " worker with 2 processes per flavour; no-op tasks with ignore_result.",
        "",
        "## Goals",
        "",
        f"- idempotency <= 2 Redis round trips on the success path (worker):"
        f" **{worker_rt:.2f}** -> {'met' if worker_rt <= 2.0 + 1e-9 else 'NOT met'}"
        " (opt-in dedupe_enqueue adds 1 per publish, in the producer)",
        f"- idempotency <= 10% throughput cost on a no-op task: CPU per task (worker +"
        f" redis-server) **{cpu_cost:+.1%}** vs the kit with helpers off, i.e. a saturated"
        f" worker does {1 / (1 + cpu_cost) - 1:+.1%} tasks/s ->"
        f" {'met' if cpu_cost <= 0.10 / 0.9 else 'NOT met'}. Wall-clock throughput changed"
        f" {wall_change:+.1%} (medians; see the noise note below).",
        "",
        f"## Worker throughput and CPU ({report['n_per_run']} tasks per run, median of"
        f" {report['rounds']} interleaved rounds; published while every worker is SIGSTOPped,"
        " timed from SIGCONT to drained queue while the idle workers stay stopped)",
        "",
        "| variant | tasks/s (median) | vs kit off | samples (tasks/s) | CPU µs/task"
        " (median) | vs kit off | runtime in pool p50 (µs) |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for name, row in tput.items():
        median, cpu = row["median_per_s"], row["cpu_us_per_task"]
        samples = ", ".join(f"{s:.0f}" for s in row["samples_per_s"])
        runtime = row.get("pool_runtime_p50_us")
        shown = f"{runtime:.0f}" if runtime is not None else "?"
        lines.append(
            f"| {name} | {median:.0f} | {median / off - 1:+.1%} | {samples} | {cpu:.0f}"
            f" | {cpu / off_cpu - 1:+.1%} | {shown} |"
        )
    lines += [
        "",
        "## Redis round trips per task (MONITOR on a dedicated kit Redis, real worker)",
        "",
        "| variant | round trips / task | by command | evalsha calls / task (commandstats) |",
        "|---|---:|---|---:|",
    ]
    for name, row in report["round_trips"].items():
        by = ", ".join(f"{k} {v:.2f}" for k, v in row["by_command_per_task"].items()) or "none"
        lines.append(
            f"| {name} | {row['round_trips_per_task']:.2f} | {by} | {row['evalsha_per_task']:.2f} |"
        )
    lines += [
        "",
        "## Added latency per task (in-process, µs)",
        "",
        "| what | mean | p50 | p99 |",
        "|---|---:|---:|---:|",
    ]
    for name, row in report["latency"].items():
        lines.append(
            f"| {name} | {row['mean_us']:.0f} | {row['p50_us']:.0f} | {row['p99_us']:.0f} |"
        )
    lines += [
        "",
        "Notes.",
        "",
        "- Round trips exclude commands run inside scripts (MONITOR tags them `lua`). Each",
        "  script is loaded once per process (EVALSHA, NOSCRIPT, SCRIPT LOAD: warm-up, not",
        "  counted). A `SET` now and then is the worker heartbeat key (kit health), not a",
        "  helper.",
        "- Wall-clock throughput on this 2-CPU machine swings by tens of percent between",
        "  identical runs (other processes share the CPUs; Celery's Redis consumer also has",
        "  slow episodes with plain Celery). CPU per task (worker main + pool processes,",
        "  reaped ones included, + redis-server) is far steadier, and at saturation",
        "  throughput is inversely proportional to it: the goal is judged on it.",
        "- Plain Celery with its defaults acks on receipt and prefetches 4 per process;",
        "  'plain Celery + kit settings' is the like-for-like baseline of 'kit, helpers off'.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
