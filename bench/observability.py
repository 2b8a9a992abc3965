"""What task-aware logs and tracing cost a worker, next to plain Celery, in one run.

``python -m bench observability``. On a private redis-server, a real prefork worker
(``-c 2``, ``-l INFO``: Celery logs two lines per task, "received" in the main process and
"succeeded" in the pool process) drains a backlog of no-op tasks in each set-up, in
rotating order over several rounds:

* ``plain``: plain Celery, same task;
* ``kit-bare``: the kit with ``[logging] task_context = false`` (Celery's records as is);
* ``kit``: the kit's defaults (task-context filter on, text format);
* ``json``: ``[logging] format = "json"`` (python-json-logger);
* ``tracing``: ``[tracing] enabled = true``, spans exported over OTLP/HTTP to a sink in
  this process (batch processor, default settings);
* ``tracing-noexport``: tracing on with ``OTEL_TRACES_EXPORTER=none`` (span work alone).

CPU per task (worker processes + redis-server, from /proc) is the judged figure; wall-clock
throughput is shown too. A micro-benchmark times one record through the filter and the
JSON formatter in-process. Writes ``bench/results/observability.md`` and ``.json``.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import celery

from bench._proc import cpu_s, json_child, remaining, tree_cpu_s, wait_drained, write_results
from celery_kit import Settings, make_app
from celery_kit.observability.depth import redis_list_names
from celery_kit.testing import RedisServer, WorkerFactory

ROOT = Path(__file__).resolve().parents[1]
BACKLOG = 2000
ROUNDS = 3
SETUPS = ("plain", "kit-bare", "kit", "json", "tracing", "tracing-noexport")
QUEUE = "default"
#: The goal from the issue: task-aware logs (filter + JSON) cost at most 5 % per task.
GOAL_PCT = 5.0
RECORDS = 50_000
REPEATS = 10


class _Sink(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports and throws them away (the collector is not measured)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _env(url: str, setup: str, sink: str) -> dict[str, str]:
    env = {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url, "BENCH_APP": "kit"}
    extra: dict[str, dict[str, str]] = {
        "plain": {"BENCH_APP": "plain"},
        "kit-bare": {"CELERY_KIT_LOGGING__TASK_CONTEXT": "false"},
        "kit": {},
        "json": {"CELERY_KIT_LOGGING__FORMAT": "json"},
        "tracing": {
            "CELERY_KIT_TRACING__ENABLED": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
        },
        "tracing-noexport": {
            "CELERY_KIT_TRACING__ENABLED": "true",
            "OTEL_TRACES_EXPORTER": "none",
        },
    }
    return env | extra[setup]


def drain(
    server: RedisServer, setup: str, sink: str, factory: WorkerFactory
) -> tuple[float, float, float]:
    """Publish the backlog, start a worker: tasks/s, worker and redis CPU µs per task."""
    db = server.fresh_db()
    url = server.url(db)
    env = _env(url, setup, sink)
    if setup == "plain":  # plain Celery's Redis layout (its own priority lists, separator)
        producer = celery.Celery("bench_obs_producer", broker=url)
        producer.conf.task_default_queue = QUEUE
    else:
        settings = Settings(_environ={"CELERY_BROKER_URL": url})
        producer = make_app("bench_obs_producer", settings=settings)
    for _ in range(BACKLOG):
        producer.send_task("bench.noop", queue=QUEUE)
    client = server.client(db)
    names = redis_list_names(QUEUE, sep=":", priority_steps=range(10))
    worker = factory("bench._observability_apps", env=env, queues=[QUEUE], concurrency=2,
                     pythonpath=[ROOT], cwd=ROOT)  # fmt: skip
    try:
        cpu0, redis0 = tree_cpu_s(worker), cpu_s(server.pid)
        start, taken = time.perf_counter(), BACKLOG - remaining(client, names)[0]
        deadline = start + 300
        wait_drained(client, names, deadline, setup)
        elapsed = time.perf_counter() - start
        cpu, redis_cpu = tree_cpu_s(worker) - cpu0, cpu_s(server.pid) - redis0
    finally:
        worker.terminate(timeout_s=20)
        client.close()
    tasks = BACKLOG - taken
    return tasks / elapsed, cpu / tasks * 1e6, redis_cpu / tasks * 1e6


def micro() -> dict[str, float]:
    """µs per record: Celery's formatter alone, + the task filter, JSON + filter."""
    from celery.app.log import TaskFormatter

    from celery_kit.observability.tasklog import TaskContextFilter, json_formatter

    app = make_app("bench_obs_micro", settings=Settings(_environ={}, broker_url="redis://h:1/0"))
    record_holder: list[logging.LogRecord] = []
    text = TaskFormatter("[%(asctime)s: %(levelname)s/%(processName)s] %(message)s")
    task_filter, as_json = TaskContextFilter(), json_formatter()

    def time_it(fmt: logging.Formatter, filt: logging.Filter | None) -> float:
        record, best = record_holder[0], float("inf")
        for _ in range(REPEATS):  # the best of several: the least disturbed by other jobs
            t = time.perf_counter()
            for _ in range(RECORDS // REPEATS):
                if filt is not None:
                    filt.filter(record)
                fmt.format(record)
            best = min(best, (time.perf_counter() - t) / (RECORDS // REPEATS) * 1e6)
        return best

    results: dict[str, float] = {}

    @app.task(name="bench.micro", shared=False)
    def run() -> None:
        record_holder.append(
            logging.LogRecord("x", 20, __file__, 1, "Task %s succeeded", ("x",), None)
        )
        for _ in range(2):  # interleaved, the second pass kept
            results["text"] = time_it(text, None)
            results["text+filter"] = time_it(text, task_filter)
            results["json+filter"] = time_it(as_json, task_filter)

    run.apply()
    return results


_TRACING_MICRO = """
import json, sys, time
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from celery_kit import Settings, make_app
from celery_kit.observability.tracing import ensure, tracing_of

class Null(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS

app = make_app("bench_obs_tracing", settings=Settings(_environ={}, broker_url="redis://h:1/0",
               tracing={"enabled": True}))

@app.task(name="bench.micro_noop", shared=False)
def noop():
    return None

def per_call(n):
    for _ in range(500):
        noop.apply()
    t = time.perf_counter()
    for _ in range(n):
        noop.apply()
    return (time.perf_counter() - t) / n * 1e6

off = per_call(N)
state = tracing_of(app)
state.exporter = Null
ensure(state)  # the instrumentation, a provider with a batch processor, the kit's attributes
on = per_call(N)
state.provider.force_flush()
print(json.dumps({"untraced_us": off, "traced_us": on}))
"""


def micro_tracing() -> dict[str, float]:
    """µs per eagerly applied no-op task, untraced then traced (a fresh interpreter)."""
    code = _TRACING_MICRO.replace("N)", f"{RECORDS // 10})")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CELERY"))}
    result: dict[str, float] = json_child(code, env, timeout_s=300, cwd=ROOT)
    return result


def main() -> None:
    """Run the comparison and write the results."""
    rates: dict[str, list[float]] = {s: [] for s in SETUPS}
    cpu: dict[str, list[float]] = {s: [] for s in SETUPS}
    redis_cpu: dict[str, list[float]] = {s: [] for s in SETUPS}
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-obs-") as tmp:
            work = Path(tmp)
            (work / "redis").mkdir()
            factory = WorkerFactory(work)
            with RedisServer(workdir=work / "redis") as server:
                try:
                    for round_ in range(ROUNDS):
                        shift = round_ % len(SETUPS)
                        for setup in SETUPS[shift:] + SETUPS[:shift]:
                            rate, worker_us, redis_us = drain(server, setup, endpoint, factory)
                            rates[setup].append(rate)
                            cpu[setup].append(worker_us)
                            redis_cpu[setup].append(redis_us)
                            print(f"   round {round_ + 1} {setup:<17} {rate:6.0f} tasks/s"
                                  f" {worker_us:6.0f} µs worker {redis_us:5.0f} µs redis",
                                  flush=True)  # fmt: skip
                finally:
                    factory.stop_all()
    finally:
        sink.shutdown()
        sink.server_close()
    total = {s: statistics.median(cpu[s]) + statistics.median(redis_cpu[s]) for s in SETUPS}
    base = total["kit-bare"]
    cost = {s: (total[s] - base) / base * 100 for s in SETUPS}
    per_record = micro()
    spans = micro_tracing()
    # The judged figures: the measured per-record (per-task) cost as a share of a
    # kit-bare task's CPU. Two records per task at -l INFO; the drains above are the
    # end-to-end check, but on a shared machine their noise exceeds these effects.
    logs_pct = 2 * (per_record["json+filter"] - per_record["text"]) / base * 100
    filter_pct = 2 * (per_record["text+filter"] - per_record["text"]) / base * 100
    span_pct = (spans["traced_us"] - spans["untraced_us"]) / base * 100
    data: dict[str, Any] = {
        "backlog": BACKLOG,
        "rounds": ROUNDS,
        "tasks_per_s": rates,
        "median_tasks_per_s": {s: statistics.median(v) for s, v in rates.items()},
        "worker_cpu_us_per_task": cpu,
        "redis_cpu_us_per_task": redis_cpu,
        "median_total_cpu_us_per_task": total,
        "cpu_cost_pct_vs_kit_bare": cost,
        "drain_spread_pct": max(
            (max(v) - min(v)) / statistics.median(v) * 100 for v in cpu.values()
        ),
        "record_us": per_record,
        "eager_task_us": spans,
        "judged_pct_of_kit_bare_task": {
            "filter": filter_pct,
            "json_and_filter": logs_pct,
            "tracing": span_pct,
        },
        "goal": f"task logs (filter + JSON) <= {GOAL_PCT:g}% of a task's CPU",
        "goal_met": logs_pct <= GOAL_PCT,
        "machine": {
            "python": platform.python_version(),
            "celery": celery.__version__,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    write_results("observability", data, _markdown(data), show=False)
    print("   drains, CPU per task vs kit-bare: "
          + ", ".join(f"{s} {cost[s]:+.1f}%" for s in SETUPS))  # fmt: skip
    print(f"   judged: filter {filter_pct:.2f}%, JSON + filter {logs_pct:.2f}%,"
          f" tracing {span_pct:.1f}% of a task's CPU ({base:.0f} µs)")  # fmt: skip


def _markdown(data: dict[str, Any]) -> str:
    total, cost = data["median_total_cpu_us_per_task"], data["cpu_cost_pct_vs_kit_bare"]
    rates, medians = data["tasks_per_s"], data["median_tasks_per_s"]
    m = data["machine"]
    lines = [
        "# Task logs and tracing overhead (bench/observability.py)",
        "",
        f"A real prefork worker (`-c 2`, `-l INFO`) drains {data['backlog']} no-op tasks"
        f" (`ignore_result`) from a private redis-server, per set-up, {data['rounds']} rounds"
        f" in rotating order; medians. Celery {m['celery']}, Python {m['python']},"
        f" {m['cpus']} CPUs shared with other jobs.",
        "",
        "| set-up | CPU µs/task (worker + redis) | vs kit-bare | median tasks/s | every round |",
        "|---|---:|---:|---:|---|",
    ]
    for setup in SETUPS:
        every = ", ".join(f"{r:.0f}" for r in rates[setup])
        lines.append(
            f"| {setup} | {total[setup]:.0f} | {cost[setup]:+.1f} % |"
            f" {medians[setup]:.0f} | {every} |"
        )
    rec, eager, judged = (
        data["record_us"],
        data["eager_task_us"],
        data["judged_pct_of_kit_bare_task"],
    )
    lines += [
        "",
        "## Measured in-process (the judged figures)",
        "",
        "One log record (µs): Celery's text formatter"
        f" {rec['text']:.1f}, + task filter {rec['text+filter']:.1f},"
        f" JSON + filter {rec['json+filter']:.1f}. A task logs two records at `-l INFO`.",
        f" One eagerly applied no-op task (µs): untraced {eager['untraced_us']:.0f},"
        f" traced {eager['traced_us']:.0f} (run span, kit attributes, batch processor).",
        "",
        "As a share of a kit-bare task's CPU in the drains above:",
        "",
        "| what | per task |",
        "|---|---:|",
        f"| task-context filter | {judged['filter']:.2f} % |",
        f"| JSON lines + filter | {judged['json_and_filter']:.2f} % |",
        f"| tracing (run span) | {judged['tracing']:.1f} % |",
        "",
        f"Goal: {data['goal']} — **{'met' if data['goal_met'] else 'NOT met'}**.",
        "",
        "* `tracing` exports every span (publish spans are made by the producer, not here;"
        " the worker makes one run span per task) over OTLP/HTTP to a sink in the bench"
        " process; `tracing-noexport` shows the span work without export.",
        "* The drains are the end-to-end check, not the judged figure: on a shared 2-CPU"
        " machine one set-up's CPU per task moved by"
        f" {data['drain_spread_pct']:.0f} % between its rounds here, far more than the"
        " effects measured. The judged figures are the in-process costs above, as a share"
        " of the median kit-bare task.",
        "",
    ]
    return "\n".join(lines)
