"""`celery -A proj kit render` and `celery-kit render --config`: the files `render()` makes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from celery_kit.cli import main
from celery_kit.render import render
from tests.integration.support.render import PRODUCTION, ROOT, production

APPS = ROOT / "tests" / "integration" / "apps"


def test_celery_kit_render_all_from_a_config_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["render", "all", "--config", str(PRODUCTION), "-o", str(tmp_path)], env={}
    )
    assert result.exit_code == 0, result.output
    expected = render("all", production(), app="proj")
    written = {str(p.relative_to(tmp_path)): p.read_text() for p in tmp_path.rglob("*")
               if p.is_file()}  # fmt: skip
    assert written == expected


def test_real_celery_command_prints_one_target(tmp_path: Path) -> None:
    # the app module reads configs/production.toml; its -A value is deploy.app ("proj")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY")}
    env.update(CELERY_KIT_CONFIG=str(PRODUCTION), PYTHONPATH=str(APPS))
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "kit_render", "kit", "render", "procfile"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == render("procfile", production(), app="proj")["Procfile"]


def test_unknown_target_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["render", "helm", "--config", str(PRODUCTION)], env={})
    assert result.exit_code == 2
    assert "'helm' is not one of" in result.output
