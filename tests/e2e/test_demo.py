"""``make demo`` end to end: its report, and no process left behind (checked by PID)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from celery_kit.testing import process_alive

ROOT = Path(__file__).parents[2]


@pytest.mark.timeout(300)
def test_demo_runs_end_to_end_and_stops_everything() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CELERY_KIT_", "CELERY_BROKER", "CELERY_RESULT"))
    }
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    # the workload did what each task is there to show
    assert re.search(r"charge order-1 \(duplicate 2\)\s+SUCCESS", out)
    assert "7 charge submissions for 5 orders -> the body ran 5 times" in out
    assert re.search(r"flaky API .*SUCCESS\s+\{'attempts': 4\}", out)
    assert re.search(r"report r-slow .*SUCCESS\s+\{.*'partial': True", out)
    assert re.search(r"refund order-2 .*FAILURE\s+\{'type': 'PermanentError'", out)
    assert re.search(r"chord: 8 e-mails \+ summary\s+SUCCESS\s+8 e-mails sent", out)
    assert "dead-letter queue: 1 entry" in out
    # the embedded Redis is gone when the demo ends: no replay command pointing at it
    assert "replay with" not in out
    assert "stops with the demo" in out
    assert "PROGRESS" in out  # the live display saw a report's progress
    # per-queue figures scraped from the workers' /metrics
    for queue in ("critical", "high", "bulk"):
        assert re.search(rf"^  {queue}\s+succeeded\s+\d+\s+mean publish->start", out, re.M)
    assert re.search(r'celery_task_succeeded_total\{.*queue_name="critical"\} 7\.0', out)
    assert "retries counted: 3" in out
    assert re.search(r"Flower: http://127\.0\.0\.1:\d+/  login admin:\S+", out)
    # every process it started is gone
    pids = [int(p) for p in re.findall(r"\bpid (\d+)", out)]
    for pool in re.findall(r"pool \[([\d, ]+)\]", out):
        pids += [int(p) for p in pool.split(",")]
    assert len(pids) == 1 + 2 * 3 + 1  # redis-server, 2 workers with 2 children, flower
    assert [p for p in pids if process_alive(p)] == []
