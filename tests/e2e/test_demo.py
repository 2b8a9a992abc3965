"""``make demo`` end to end: its report, and no process left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from celery_kit.testing import process_alive

ROOT = Path(__file__).parents[2]


@pytest.mark.timeout(180)
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
        timeout=150,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert re.search(r"charge \(succeeds\)\s+SUCCESS", out)
    assert re.search(r"flaky_api .*SUCCESS\s+\{'attempts': 3\}", out)
    assert re.search(r"slow_report .*SUCCESS\s+\{.*'partial': True", out)
    assert "2 retries scheduled" in out
    pids = [int(p) for p in re.findall(r"pid (\d+)", out)]
    pids += [int(p) for p in re.findall(r"pool \[([\d, ]+)\]", out)[0].split(",")]
    assert len(pids) == 4  # redis-server, worker main, two pool children
    assert [p for p in pids if process_alive(p)] == []
