"""Procfile: one process type per worker profile, plus the queue-length exporter and beat."""

from __future__ import annotations

import shlex

from celery_kit.render import beat_deploy
from celery_kit.render.model import Context
from celery_kit.render.systemd import beat_port, exporter_port, metrics_port

__all__ = ["procfile_lines", "render_procfile"]


def procfile_lines(ctx: Context) -> list[str]:
    """``name: VAR=value … celery -A app worker …`` lines (a shell runs each)."""
    lines = []
    for index, profile in enumerate(ctx.profiles):
        # `kit worker NAME` execs the `kit workers` line after making a private metrics
        # directory (several processes may share a host)
        env = ctx.worker_env(profile, metrics_dir=None)
        if ctx.settings.metrics.enabled:
            env["CELERY_KIT_METRICS__PORT"] = str(metrics_port(ctx, index))
        words = [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())]
        command = shlex.join(["celery", "-A", ctx.app, "kit", "worker", profile])
        lines.append(f"{profile}: {' '.join([*words, command])}")
    if ctx.settings.metrics.enabled:
        argv = [*ctx.exporter_argv(), "--port", str(exporter_port(ctx))]
        lines.append(f"exporter: {shlex.join(argv)}")
    if beat_deploy.beat_rendered(ctx):
        env = beat_deploy.beat_env(ctx, heartbeat=False, port=beat_port(ctx))
        words = [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())]
        lines.append(f"beat: {' '.join([*words, shlex.join(beat_deploy.beat_argv(ctx))])}")
    return lines


def render_procfile(ctx: Context) -> dict[str, str]:
    """``Procfile``."""
    return {"Procfile": "\n".join([f"# {ctx.header('procfile')}", *procfile_lines(ctx)]) + "\n"}
