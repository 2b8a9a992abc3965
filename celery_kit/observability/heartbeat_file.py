"""The heartbeat file: its format version, where it lives, and finding it (standard library only).

Written by :class:`celery_kit.observability.heartbeat.Heartbeat` in the worker's main
process; read by the probes (:mod:`.probes`), which must answer without importing Celery.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from pathlib import Path

__all__ = [
    "BEAT_HEARTBEAT_FILE_ENV",
    "BEAT_HEARTBEAT_NAME",
    "DEFAULT_HEARTBEAT_NAME",
    "HEARTBEAT_FILE_ENV",
    "HEARTBEAT_VERSION",
    "default_beat_heartbeat_file",
    "default_heartbeat_file",
    "expand_heartbeat_path",
    "heartbeat_files",
]

#: Format version written in every heartbeat.
HEARTBEAT_VERSION = 1
#: Read by the stand-alone probe when ``--file`` is not given (same name as the setting).
HEARTBEAT_FILE_ENV = "CELERY_KIT_HEALTH__HEARTBEAT_FILE"
#: File name of the default heartbeat, in the temporary directory: scoped by app name
#: (``%a``) and node name (``%n``), so workers of other projects on the host never match.
DEFAULT_HEARTBEAT_NAME = "celery-kit-%a-%n.heartbeat.json"

#: The beat process's heartbeat (same format; :mod:`.beat` writes it every beat loop).
BEAT_HEARTBEAT_NAME = "celery-kit-beat.heartbeat.json"
#: ``beat.heartbeat_file`` as an environment variable (read by ``kit health --beat``).
BEAT_HEARTBEAT_FILE_ENV = "CELERY_KIT_BEAT__HEARTBEAT_FILE"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def default_heartbeat_file() -> str:
    """``<temp dir>/celery-kit-%a-%n.heartbeat.json`` (``%a``: app name, ``%n``: node name)."""
    return os.path.join(tempfile.gettempdir(), DEFAULT_HEARTBEAT_NAME)


def default_beat_heartbeat_file() -> str:
    """``<temp dir>/celery-kit-beat.heartbeat.json``."""
    return os.path.join(tempfile.gettempdir(), BEAT_HEARTBEAT_NAME)


def _app_part(app_name: str) -> str:
    return _UNSAFE.sub("_", app_name) or "app"


def expand_heartbeat_path(template: str, hostname: str, app_name: str = "") -> str:
    """Replace ``%a`` (the app's name), ``%n`` (node name, ``celery`` in ``celery@host``) and
    ``%h`` (full node name)."""
    node = hostname.split("@", 1)[0]
    path = template.replace("%n", node).replace("%h", hostname)
    return path.replace("%a", _app_part(app_name)) if "%a" in path else path


def heartbeat_files(
    template: str, *, node: str | None = None, app_name: str | None = None
) -> list[Path]:
    """The existing heartbeat files ``template`` names.

    Args:
        template: a path, or a template with ``%a``/``%n``/``%h``.
        node: only this worker (``celery`` or ``celery@host``); ``None``: any worker.
        app_name: only this app's workers; ``None``: any app.
    """
    pattern = glob.escape(template)
    if app_name:
        pattern = pattern.replace("%a", glob.escape(_app_part(app_name)))
    if node:
        short = node.split("@", 1)[0]
        full = node if "@" in node else f"{node}@*"
        pattern = pattern.replace("%n", glob.escape(short)).replace("%h", full)
    pattern = pattern.replace("%a", "*").replace("%n", "*").replace("%h", "*")
    return sorted(Path(p) for p in glob.glob(pattern))  # a plain path is its own pattern
