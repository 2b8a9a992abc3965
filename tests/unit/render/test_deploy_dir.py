"""deploy/ is exactly what `render all` writes for configs/production.toml."""

from __future__ import annotations

from pathlib import Path

from celery_kit.render import render, write
from tests.integration.support.render import ROOT, production

DEPLOY = ROOT / "deploy"


def test_deploy_directory_is_up_to_date(tmp_path: Path) -> None:
    write(render("all", production(), app="proj"), tmp_path)
    fresh = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {
        p.relative_to(DEPLOY): p.read_text()
        for p in DEPLOY.rglob("*")
        if p.is_file() and p.name != "README.md"
    }
    stale = sorted(str(p) for p in fresh.keys() | committed.keys()
                   if fresh.get(p) != committed.get(p))  # fmt: skip
    assert stale == [], (
        "deploy/ differs from `render all` for configs/production.toml; regenerate it:"
        " celery-kit render all --config configs/production.toml -o deploy (with no CELERY_KIT_*"
        " variables set)"
    )
