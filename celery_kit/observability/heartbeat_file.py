"""The heartbeat file: its format version, where it lives, and finding it (standard library only).

Written by :class:`celery_kit.observability.heartbeat.Heartbeat` in the worker's main
process; read by the probes (:mod:`.probes`), which must answer without importing Celery.
"""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path

__all__ = [
    "DEFAULT_HEARTBEAT_NAME",
    "HEARTBEAT_FILE_ENV",
    "HEARTBEAT_VERSION",
    "default_heartbeat_file",
    "expand_heartbeat_path",
    "heartbeat_files",
]

#: Format version written in every heartbeat.
HEARTBEAT_VERSION = 1
#: Read by the stand-alone probe when ``--file`` is not given (same name as the setting).
HEARTBEAT_FILE_ENV = "CELERY_KIT_HEALTH__HEARTBEAT_FILE"
#: File name of the default heartbeat, in the temporary directory.
DEFAULT_HEARTBEAT_NAME = "celery-kit-%n.heartbeat.json"


def default_heartbeat_file() -> str:
    """``<temp dir>/celery-kit-%n.heartbeat.json`` (``%n``: the worker's node name)."""
    return os.path.join(tempfile.gettempdir(), DEFAULT_HEARTBEAT_NAME)


def expand_heartbeat_path(template: str, hostname: str) -> str:
    """Replace ``%n`` (node name, ``celery`` in ``celery@host``) and ``%h`` (full name)."""
    node = hostname.split("@", 1)[0]
    return template.replace("%n", node).replace("%h", hostname)


def heartbeat_files(template: str) -> list[Path]:
    """The existing heartbeat files ``template`` names (``%n``/``%h`` match any worker)."""
    if "%n" in template or "%h" in template:
        pattern = glob.escape(template).replace("%n", "*").replace("%h", "*")
        return sorted(Path(p) for p in glob.glob(pattern))
    return [Path(template)] if Path(template).exists() else []
