"""Deploy artifacts built as data from ``Settings``: ``celery -A proj kit render TARGET``.

Every artifact is a Python data structure dumped with PyYAML/json (systemd units with one
small INI serializer); every derived value comes from :class:`celery_kit.render.model.Context`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery_kit.config.settings import Settings
    from celery_kit.render.model import Context

__all__ = ["TARGETS", "render", "write"]

#: Target name → the renderer's module and function (imported on use).
TARGETS: dict[str, tuple[str, str]] = {
    "k8s": ("celery_kit.render.k8s", "render_k8s"),
    "keda": ("celery_kit.render.keda", "render_keda"),
    "compose": ("celery_kit.render.compose", "render_compose"),
    "systemd": ("celery_kit.render.systemd", "render_systemd"),
    "procfile": ("celery_kit.render.procfile", "render_procfile"),
    "alerts": ("celery_kit.render.alerts", "render_alerts"),
    "dashboard": ("celery_kit.render.dashboard", "render_dashboard"),
}


def _renderer(target: str) -> Callable[[Context], dict[str, str]]:
    import importlib

    from celery_kit.exceptions import RenderError

    if target not in TARGETS:
        raise RenderError(
            f"unknown render target {target!r}; choose one of {', '.join(TARGETS)} or all"
        )
    module, name = TARGETS[target]
    function: Callable[[Context], dict[str, str]] = getattr(importlib.import_module(module), name)
    return function


def render(target: str, settings: Settings, *, app: str) -> dict[str, str]:
    """Render ``target`` (or ``"all"``): relative file path → text.

    Args:
        target: a name of :data:`TARGETS`, or ``"all"``.
        settings: the app's settings.
        app: the ``-A`` value put in commands (``deploy.app`` wins when set).

    Raises:
        RenderError: unknown target, or settings that cannot be rendered (the message
            says which setting to change).
    """
    from celery_kit.render.model import Context

    ctx = Context(settings, settings.deploy.app or app)
    targets = list(TARGETS) if target == "all" else [target]
    files: dict[str, str] = {}
    for name in targets:
        files.update(_renderer(name)(ctx))
    return files


def write(files: dict[str, str], directory: str | Path) -> list[Path]:
    """Write rendered ``files`` under ``directory``; returns the paths written."""
    root = Path(directory)
    written = []
    for relative, text in sorted(files.items()):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
