"""What counting one task costs a worker, in process: the metrics' CPU per task, measured
where a worker spends it.

``python -m bench metrics_cost``. Each variant runs in a fresh interpreter (Celery signals
are process-wide; prometheus_client picks multiprocess mode at import), with
``PROMETHEUS_MULTIPROC_DIR`` set as in a prefork worker:

* pool process: Celery's tracer (``build_tracer``, what a pool process runs per task) on a
  no-op ``KitTask`` with ``ignore_result``, the message's request as the pool receives it;
* main process: ``task_received`` as the consumer sends it for each message.

Variants: ``kit`` (metrics off) and ``kit_metrics`` (``metrics.enabled``). The difference is
what metrics cost per task, everything included (Celery's signal dispatch, the kit's code,
prometheus_client's writes to its memory-mapped files). CPU time (``time.process_time``),
best of several repeats. Writes ``bench/results/metrics_cost.{md,json}``.
"""

from __future__ import annotations

import os
import platform
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from bench._proc import json_child, write_results

ROOT = Path(__file__).resolve().parents[1]
CALLS = int(os.environ.get("BENCH_METRICS_COST_CALLS", "20000"))
REPEATS = int(os.environ.get("BENCH_METRICS_COST_REPEATS", "7"))
VARIANTS = ("kit", "kit_metrics")

_CHILD = """
import json, os, sys, time, uuid
from types import SimpleNamespace
sys.path.insert(0, {root!r})
from celery import signals
from celery.app.trace import build_tracer
from celery_kit import Settings, make_app
from celery_kit.topology.publish import PUBLISHED_AT_HEADER

metrics = {metrics!r}
on = {{"CELERY_KIT_METRICS__ENABLED": "true", "CELERY_KIT_METRICS__PORT": "0"}}
env = on if metrics else {{}}
app = make_app("micro", settings=Settings(_environ=env, broker_url="redis://127.0.0.1:1/0"))

@app.task(name="micro.noop", shared=False, ignore_result=True)
def noop(i):
    return None

app.finalize()
task = app.tasks["micro.noop"]
if metrics:  # as the worker's bootstep does in the main process, before the pool forks
    from celery_kit.observability.metrics import metrics_of, metrics_state
    state = metrics_state(app)
    state.hostname, state.main_pid = "w@host", -1  # not this process: a pool process
    metrics_of(app)
    if getattr(state, "run_receivers", None):  # MetricsStep at worker start
        from celery_kit.observability.runs import narrow_run_receivers
        narrow_run_receivers(app, *state.run_receivers)
tracer = build_tracer(task.name, task, app.loader, "w@host", app=app)
info = {{"routing_key": "default", "exchange": "", "priority": 0, "redelivered": False}}

def request():
    return {{
        "id": uuid.uuid4().hex, "task": task.name, "hostname": "w@host", "is_eager": False,
        "delivery_info": dict(info), "args": (1,), "kwargs": {{}},
        PUBLISHED_AT_HEADER: time.time() - 0.01,
    }}

def best(fn, calls, repeats):
    out = []
    for _ in range(repeats):
        items = [fn.prepare() for _ in range(calls)]
        t0 = time.process_time()
        for item in items:
            fn(item)
        out.append((time.process_time() - t0) / calls * 1e6)
    return min(out)

class Pool:
    prepare = staticmethod(request)
    def __call__(self, req):
        tracer(req["id"], (1,), {{}}, req)

class Consumer:
    app = app
consumer = Consumer()
class Main:
    @staticmethod
    def prepare():
        return SimpleNamespace(task=task, name=task.name, id=uuid.uuid4().hex,
                               delivery_info=dict(info))
    def __call__(self, req):
        signals.task_received.send(sender=consumer, request=req)

pool_us = best(Pool(), {calls}, {repeats})
main_us = best(Main(), {calls}, {repeats})
print(json.dumps({{"pool_us": pool_us, "main_us": main_us}}))
"""


def run_variant(variant: str) -> dict[str, float]:
    """Per-task CPU µs (pool tracer, main receive) of one variant, in a fresh interpreter."""
    with tempfile.TemporaryDirectory(prefix="metrics-cost-") as directory:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
        env["PROMETHEUS_MULTIPROC_DIR"] = directory
        code = textwrap.dedent(
            _CHILD.format(
                root=str(ROOT), metrics=variant == "kit_metrics", calls=CALLS, repeats=REPEATS
            )
        )
        result: dict[str, float] = json_child(code, env, timeout_s=600)
    return result


def render(report: dict[str, Any]) -> str:
    """The results page."""
    v = report["variants"]
    base, met = v["kit"], v["kit_metrics"]
    lines = [
        "# Metrics cost per task, in process (bench/metrics_cost.py)",
        "",
        f"{report['when']}, Python {report['python']}, load average before"
        f" {report['load_before']}, after {report['load_after']}. {report['calls']} tasks per"
        f" repeat, best of {report['repeats']} (CPU time). Reproduce:"
        " `python -m bench metrics_cost`.",
        "",
        "| process | kit µs/task | kit with metrics µs/task | metrics cost µs/task |",
        "|---|---:|---:|---:|",
    ]
    for part, label in (("pool_us", "pool (Celery's tracer)"), ("main_us", "main (receive)")):
        lines.append(
            f"| {label} | {base[part]:.1f} | {met[part]:.1f} | {met[part] - base[part]:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure every variant; write bench/results/metrics_cost.{md,json}."""
    load_before = os.getloadavg()
    started = time.time()
    variants = {name: run_variant(name) for name in VARIANTS}
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)) + " UTC",
        "python": platform.python_version(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "calls": CALLS,
        "repeats": REPEATS,
        "variants": variants,
    }
    write_results("metrics_cost", report, render(report))
