"""Helpers of the render tests: external tools (skip locally, fail under CI) and settings."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from celery_kit import Settings

ROOT = Path(__file__).parents[3]
PRODUCTION = ROOT / "configs" / "production.toml"

#: How each tool is installed (the Makefile's test-deps target does it as root).
_INSTALL = {
    "promtool": "apt-get install prometheus (make test-deps)",
    "prometheus": "apt-get install prometheus (make test-deps)",
    "systemd-analyze": "apt-get install systemd",
}


def require_binary(name: str, *, required_in_ci: bool = True) -> str:
    """Path of ``name``; skips the test locally when missing, fails it when ``CI`` is set."""
    found = shutil.which(name)
    if found:
        return found
    why = f"{name} not found on PATH; install it: {_INSTALL.get(name, name)}"
    if required_in_ci and os.environ.get("CI"):
        pytest.fail(f"{why} (required in CI)", pytrace=False)
    pytest.skip(why)


def production(**overrides: Any) -> Settings:
    """configs/production.toml, read without the environment, plus keyword overrides."""
    return Settings(_config=PRODUCTION, _environ={}, **overrides)
