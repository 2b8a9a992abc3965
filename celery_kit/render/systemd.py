"""systemd units: one service per worker profile, one for the queue-length exporter and one
for beat (when it has a schedule).

Units are built as ``(section, [(key, value)])`` data and written by one serializer that
quotes command lines and escapes ``%`` (systemd specifiers; Celery's ``-n name@%h`` needs
``%%h``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from celery_kit.render import beat_deploy
from celery_kit.render.model import Context

__all__ = [
    "Unit",
    "beat_port",
    "dump_unit",
    "exporter_port",
    "metrics_port",
    "render_systemd",
    "units",
]

Unit = list[tuple[str, list[tuple[str, str]]]]

_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def _escape(value: str) -> str:
    return value.replace("%", "%%")


def _quote(word: str) -> str:
    """One word of a systemd command line or assignment list."""
    if word and _PLAIN.match(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _command(argv: Sequence[str]) -> str:
    return " ".join(_quote(_escape(word)) for word in argv)


def dump_unit(unit: Unit, *, header: str = "") -> str:
    """Serialize a unit (sections in order, repeated keys allowed)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for section, items in unit:
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        lines += [f"{key}={value}" for key, value in items]
    return "\n".join(lines) + "\n"


def metrics_port(ctx: Context, index: int) -> int:
    """Several workers on one host: the profile at ``index`` listens on port + index."""
    return ctx.settings.metrics.port + index


def exporter_port(ctx: Context) -> int:
    """The exporter listens after the workers' ports."""
    return ctx.settings.metrics.port + len(ctx.profiles)


def beat_port(ctx: Context) -> int | None:
    """Beat listens after the exporter (``None``: metrics off)."""
    if beat_deploy.beat_metrics_port(ctx) is None:
        return None
    return exporter_port(ctx) + 1


def _service(
    ctx: Context,
    description: str,
    argv: list[str],
    env: dict[str, str],
    *,
    stop_s: int,
    runtime_dir: str,
) -> Unit:
    deploy = ctx.settings.deploy
    after = "network-online.target redis-server.service rabbitmq-server.service"
    service = [
        ("Type", "simple"),
        ("User", deploy.systemd_user),
        ("WorkingDirectory", _escape(deploy.working_directory)),
        ("EnvironmentFile", _escape(deploy.env_file)),
        *(("Environment", _quote(_escape(f"{k}={v}"))) for k, v in env.items()),
        ("RuntimeDirectory", runtime_dir),
        ("ExecStart", _command(argv)),
        # SIGTERM to the main process only; the pool children are stopped by it. SIGKILL
        # for everything left when TimeoutStopSec runs out.
        ("KillSignal", "SIGTERM"),
        ("KillMode", "mixed"),
        ("TimeoutStopSec", str(stop_s)),
        ("Restart", "always"),
        ("RestartSec", "5"),
    ]
    unit = [("Description", description), ("After", after), ("Wants", "network-online.target")]
    return [("Unit", unit), ("Service", service), ("Install", [("WantedBy", "multi-user.target")])]


def units(ctx: Context) -> dict[str, Unit]:
    """Unit file name → unit."""
    from celery_kit.observability.multiproc import MULTIPROC_ENV

    out: dict[str, Unit] = {}
    deploy = ctx.settings.deploy
    for index, profile in enumerate(ctx.profiles):
        name = ctx.worker_name(profile)
        env = ctx.worker_env(profile, metrics_dir=None)
        if ctx.settings.metrics.enabled:
            env[MULTIPROC_ENV] = f"/run/{name}/metrics"
            env["CELERY_KIT_METRICS__PORT"] = str(metrics_port(ctx, index))
        argv = ctx.worker_argv(profile, celery=deploy.celery_bin)
        out[f"{name}.service"] = _service(
            ctx,
            f"celery_kit worker profile {profile} ({', '.join(ctx.profiles[profile].queues)})",
            argv,
            dict(sorted(env.items())),
            stop_s=ctx.grace_period_s(profile),
            runtime_dir=name,
        )
    if ctx.settings.metrics.enabled:
        ctx.require_metrics("systemd")
        name = ctx.object_name("exporter")
        out[f"{name}.service"] = _service(
            ctx,
            "celery_kit queue-length exporter (one per deployment)",
            [*ctx.exporter_argv(celery=deploy.celery_bin), "--port", str(exporter_port(ctx))],
            {},
            stop_s=30,
            runtime_dir=name,
        )
    if beat_deploy.beat_rendered(ctx):
        name = ctx.object_name("beat")
        out[f"{name}.service"] = _service(
            ctx,
            "celery_kit beat (the leader lease makes one replica send)",
            beat_deploy.beat_argv(ctx, celery=deploy.celery_bin),
            beat_deploy.beat_env(ctx, heartbeat=False, port=beat_port(ctx)),
            stop_s=30,
            runtime_dir=name,
        )
    return out


def render_systemd(ctx: Context) -> dict[str, str]:
    """``systemd/<name>.service`` per unit."""
    header = ctx.header("systemd")
    return {f"systemd/{name}": dump_unit(unit, header=header) for name, unit in units(ctx).items()}
