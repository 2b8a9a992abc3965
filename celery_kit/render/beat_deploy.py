"""What every artifact says about the beat process (``[beat]`` on): its command, heartbeat
file, probe and metrics port, derived once so the Deployment, the unit and the Procfile
agree.

One replica is enough and two are safe: the kit's scheduler sends only while it holds the
leader lease in Redis (docs/beat.md), so a rolling update that briefly runs the old and the
new pod side by side sends nothing twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery_kit.exceptions import RenderError

if TYPE_CHECKING:
    from celery_kit.render.model import Context

__all__ = [
    "CONTAINER_BEAT_HEARTBEAT_FILE",
    "beat_argv",
    "beat_env",
    "beat_heartbeat_file",
    "beat_metrics_port",
    "beat_probe_argv",
    "beat_rendered",
]

#: The beat heartbeat in a container when ``beat.heartbeat_file`` is unset.
CONTAINER_BEAT_HEARTBEAT_FILE = "/tmp/celery-kit-beat.heartbeat.json"


def beat_rendered(ctx: Context) -> bool:
    """Whether the config runs beat (``[beat.schedule]`` entries, or ``beat.enabled``)."""
    return bool(ctx.settings.beat.active)


def beat_argv(ctx: Context, *, celery: str = "celery") -> list[str]:
    """``kit beat``: checks the schedule's tasks exist, then runs the kit's scheduler."""
    return [celery, "-A", ctx.app, "kit", "beat"]


def beat_heartbeat_file(ctx: Context) -> str:
    """The file the beat loop rewrites and its probe reads."""
    return ctx.settings.beat.heartbeat_file or CONTAINER_BEAT_HEARTBEAT_FILE


def beat_probe_argv(ctx: Context, *, python: str = "python") -> list[str]:
    """Liveness of the beat loop: standard library only, no app import, no Redis."""
    return [python, "-m", "celery_kit.health", "--liveness", "--file", beat_heartbeat_file(ctx)]


def beat_metrics_port(ctx: Context) -> int | None:
    """The beat's ``/metrics`` port in its own pod; ``None`` with metrics off.

    Raises:
        RenderError: ``beat.metrics_port = 0`` (any free port) cannot be scraped.
    """
    if not ctx.settings.metrics.enabled:
        return None
    port = int(ctx.settings.beat.metrics_port)
    if port == 0:
        raise RenderError(
            "beat.metrics_port = 0 (any free port) cannot be scraped and the beat alerts read"
            " it; set a fixed port, e.g. 9809"
        )
    return port


def beat_env(ctx: Context, *, heartbeat: bool = True, port: int | None = None) -> dict[str, str]:
    """Environment of the beat process (on top of the secret/env file).

    Args:
        heartbeat: name the heartbeat file (containers; a host keeps the default path,
            which ``celery-kit health --beat`` finds by itself).
        port: the metrics port when it differs from ``beat.metrics_port`` (several
            processes on one host).
    """
    from celery_kit.observability.heartbeat_file import BEAT_HEARTBEAT_FILE_ENV

    env: dict[str, str] = {}
    if heartbeat:
        env[BEAT_HEARTBEAT_FILE_ENV] = beat_heartbeat_file(ctx)
    if port is not None:
        env["CELERY_KIT_BEAT__METRICS_PORT"] = str(port)
    return env
