"""bench.shutdown: SIGTERM → exit and SIGTERM → task restarted elsewhere, as rendered vs not.

A worker's main process gets SIGTERM the way the kubelet (or ``docker stop``, or systemd
with ``KillMode=mixed``) sends it. Flavours, each on a private redis-server and on
RabbitMQ when reachable (``CELERY_KIT_TEST_AMQP_URL``):

* **rendered** — the command and environment ``kit render k8s`` writes for the profile:
  ``REMAP_SIGTERM=SIGQUIT`` and ``soft_shutdown_timeout_s`` = 2 s: Celery's cold shutdown
  waits 2 s, cancels the running task (requeued, unacknowledged) and exits.
* **warm (Celery's default SIGTERM)** — the same worker without ``REMAP_SIGTERM``: Celery
  waits for running tasks, however long.

Two loads: one long task (30 s, 0.5 s when run again) with a second worker waiting for
it; and a backlog of 40 short tasks (0.3 s) being drained by 2 processes with prefetch 4.
Writes ``bench/results/shutdown.md`` and ``.json``. ``BENCH_SHUTDOWN_RUNS`` (default 3).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import celery
import redis
import yaml
from kombu import Connection

from celery_kit import Settings, make_app
from celery_kit.render import render
from celery_kit.testing import DEFAULT_AMQP_URL, RedisServer, WorkerProcess, wait_until

RESULTS = Path(__file__).parent / "results"
BIN = str(Path(sys.executable).parent)
RUNS = int(os.environ.get("BENCH_SHUTDOWN_RUNS", "3"))
LONG_S = 30.0
SOFT_S = 2


#: Printed under the table.
NOTES = [
    "",
    "Reading it: the rendered worker exits about 1.5-2.5 s after its 2 s soft shutdown, well"
    " inside the rendered 17 s grace period, and the long task starts again on the other"
    " worker about 3 s after SIGTERM (not after Redis' visibility timeout). Celery's warm"
    " SIGTERM waits for the running task: with a 600 s task and Kubernetes' default 30 s"
    " grace that is a SIGKILL. Backlog exits are quick either way here (the warm 32 s exits"
    " seen earlier while draining a backlog did not show with this load); the rendered one"
    " always waits the whole soft shutdown, as Celery does. The rendered worker includes the"
    " kit's deferred cold shutdown (docs/deploy.md).",
]


def _config(path: Path, broker: str, state: str, queue: str, kind: str) -> Path:
    prefetch = 4 if kind == "backlog" else 1
    conc = 2 if kind == "backlog" else 1
    path.write_text(
        f'broker_url = "{broker}"\nresult_backend = "{state}"\n'
        f"[tasks]\nsoft_time_limit_s = 50\ntime_limit_s = 60\n[queues]\n{queue} = {{}}\n"
        f'[workers.a]\nqueues = ["{queue}"]\nconcurrency = {conc}\n'
        f"prefetch_multiplier = {prefetch}\nsoft_shutdown_timeout_s = {SOFT_S}\n"
        f'[workers.b]\nqueues = ["{queue}"]\nconcurrency = 1\n'
    )
    return path


def _start(pod: dict[str, Any], env: dict[str, str], rendered: bool, log: Path) -> WorkerProcess:
    container = pod["containers"][0]
    extra = {e["name"]: e["value"] for e in container["env"]}
    if not rendered:
        extra.pop("REMAP_SIGTERM", None)
    extra["CELERY_KIT_HEALTH__HEARTBEAT_FILE"] = str(log.with_suffix(".heartbeat.json"))
    argv = container["command"]
    node = argv[argv.index("-n") + 1].split("@")[0]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            env={**env, **extra},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(proc, hostname=f"{node}@{socket.gethostname()}", log_path=log)
    worker.wait_for_log(f"{worker.hostname} ready.", timeout_s=60)
    return worker


def _starts(r: redis.Redis, key: str) -> list[list[Any]]:
    return [json.loads(x) for x in r.lrange(f"starts:{key}", 0, -1)]


def one_run(broker: str, state: str, kind: str, rendered: bool, workdir: Path) -> dict[str, Any]:
    queue = f"b{uuid.uuid4().hex[:8]}"
    config = _config(workdir / f"{queue}.toml", broker, state, queue, kind)
    base = {k: v for k, v in os.environ.items() if not k.startswith("CELERY")}
    env = {**base, "CELERY_KIT_CONFIG": str(config), "BENCH_STATE_URL": state,
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PYTHONUNBUFFERED": "1",
           "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}  # fmt: skip
    settings = Settings(_environ=env)
    docs = yaml.safe_load_all(render("k8s", settings, app="bench._shutdown_app")["k8s/celery.yaml"])
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in docs
            if d["kind"] == "Deployment"}  # fmt: skip
    grace = pods["celery-worker-a"]["terminationGracePeriodSeconds"]
    r = redis.Redis.from_url(state)
    app = make_app("bench_shutdown", settings=settings)
    workers: list[WorkerProcess] = []
    try:
        a = _start(pods["celery-worker-a"], env, rendered, workdir / f"{queue}-a.log")
        workers.append(a)
        if kind == "long":
            app.send_task("shutdown.work", (queue, LONG_S, 0.5), queue=queue)
            wait_until(lambda: _starts(r, queue), timeout_s=30, what="the task to start")
            workers.append(
                _start(pods["celery-worker-b"], env, rendered, workdir / f"{queue}-b.log")
            )
        else:
            for i in range(40):
                app.send_task("shutdown.work", (f"{queue}:{i}", 0.3, 0.3), queue=queue)
            wait_until(lambda: r.exists(f"done:{queue}:5"), timeout_s=30, what="draining")
        sent = time.time()
        os.kill(a.pid, signal.SIGTERM)
        wait_until(lambda: not a.is_alive(), timeout_s=LONG_S + 60, every_s=0.02, what="exit")
        exited = time.time() - sent
        restarted = None
        if kind == "long":
            if len(workers) > 1:
                wait_until(lambda: len(_starts(r, queue)) > 1 or r.exists(f"done:{queue}"),
                           timeout_s=60, what="restart or finish")  # fmt: skip
            starts = _starts(r, queue)
            restarted = starts[1][1] - sent if len(starts) > 1 else None
        return {"grace_s": grace, "exit_s": exited, "restarted_s": restarted}
    finally:
        for worker in workers:
            worker.kill()
        app.close()


def _brokers(server: RedisServer) -> list[tuple[str, str]]:
    out = [("Redis", server.url(1))]
    url = os.environ.get("CELERY_KIT_TEST_AMQP_URL") or DEFAULT_AMQP_URL
    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        out.append(("RabbitMQ", url))
    except Exception as exc:
        print(f"RabbitMQ unreachable ({exc!r}): Redis only")
    return out


def _fmt(values: list[float | None]) -> str:
    shown = [v for v in values if v is not None]
    if not shown:
        return "— (finished on the same worker)"
    return f"{statistics.median(shown):.2f} (" + ", ".join(f"{v:.2f}" for v in shown) + ")"


def main() -> None:
    started = time.time()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as srv:
        state = srv.url(2)
        for broker_name, broker in _brokers(srv):
            for kind in ("long", "backlog"):
                for rendered in (True, False):
                    runs = [one_run(broker, state, kind, rendered, Path(tmp)) for _ in range(RUNS)]
                    rows.append({"broker": broker_name, "load": kind, "rendered": rendered,
                                 "runs": runs})  # fmt: skip
                    print(broker_name, kind, rendered, runs, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shutdown.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# bench.shutdown",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(started))},"
        f" {time.time() - started:.0f} s, {os.cpu_count()} CPUs, Python"
        f" {platform.python_version()}, Celery {celery.__version__}. {RUNS} runs each;"
        " median (every run). SIGTERM to the worker's main process only.",
        "",
        f"Loads: **long** = one {LONG_S:g} s task running, a second worker waiting;"
        " **backlog** = 40 tasks of 0.3 s drained by 2 processes with prefetch 4."
        f" Rendered = `kit render k8s` command and env (REMAP_SIGTERM=SIGQUIT,"
        f" soft_shutdown_timeout_s = {SOFT_S}); warm = the same worker without REMAP_SIGTERM"
        " (Celery's own SIGTERM handling, as plain Celery).",
        "",
        "| broker | load | SIGTERM handling | rendered grace (s) | SIGTERM → exit (s) |"
        " SIGTERM → task restarted on the other worker (s) |",
        "|---|---|---|---:|---|---|",
    ]
    for row in rows:
        how = "rendered: cold + soft shutdown" if row["rendered"] else "warm (Celery default)"
        runs = row["runs"]
        restarted = _fmt([x["restarted_s"] for x in runs]) if row["load"] == "long" else "n/a"
        lines.append(f"| {row['broker']} | {row['load']} | {how} | {runs[0]['grace_s']} |"
                     f" {_fmt([x['exit_s'] for x in runs])} | {restarted} |")  # fmt: skip
    lines += NOTES
    (RESULTS / "shutdown.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
