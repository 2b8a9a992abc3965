"""systemd units and the Procfile: verified by systemd, commands escaped for it."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from celery_kit.render import render, write
from celery_kit.render.model import Context
from celery_kit.render.systemd import units
from tests.integration.support.render import production, require_binary


def test_systemd_analyze_verifies_every_unit(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze", required_in_ci=False)
    celery = str(Path(sys.executable).parent / "celery")
    settings = production(
        deploy={"celery_bin": celery, "working_directory": str(tmp_path), "systemd_user": "root"}
    )
    paths = write(render("systemd", settings, app="proj"), tmp_path)
    assert len(paths) == 4  # three profiles and the exporter
    done = subprocess.run(
        [analyze, "verify", *map(str, paths)], capture_output=True, text=True, cwd=tmp_path
    )
    # a host without a running systemd prints warnings about its own units; ours are clean
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "celery-" in line]
    assert ours == [], done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr


def test_percent_signs_are_escaped_for_systemd() -> None:
    unit = dict(units(Context(production(), "proj"))["celery-worker-critical.service"])
    service = unit["Service"]
    exec_start = next(v for k, v in service if k == "ExecStart")
    assert "-n critical@%%h" in exec_start  # systemd would expand %h to a home directory
    assert ("KillMode", "mixed") in service  # SIGTERM to the main process only
    assert ("Restart", "always") in service
    assert ("TimeoutStopSec", "15") in service


def test_procfile_runs_each_profile_through_kit_worker() -> None:
    text = render("procfile", production(), app="proj")["Procfile"]
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    kinds = [line.split(":", 1)[0] for line in lines]
    assert kinds == ["critical", "default", "bulk", "exporter"]
    bulk = shlex.split(lines[2].split(":", 1)[1])
    assert "REMAP_SIGTERM=SIGQUIT" in bulk
    assert "CELERY_KIT_METRICS__PORT=9810" in bulk  # one port per process on one host
    assert bulk[-5:] == ["-A", "proj", "kit", "worker", "bulk"]
    assert lines[3].endswith("kit exporter --port 9811")
