"""``kit health`` (probes and deployment report) and ``kit exporter`` (queue lengths).

Imported by :mod:`celery_kit.cli` (so by every ``celery`` command): only click and the
standard-library probes at load time. ``celery-kit health --liveness`` reads the heartbeat
file and imports neither Celery nor the app.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

from celery_kit.cli.context import app_of, settings_from
from celery_kit.observability.heartbeat_file import (
    BEAT_HEARTBEAT_FILE_ENV,
    HEARTBEAT_FILE_ENV,
    default_beat_heartbeat_file,
)
from celery_kit.observability.probes import probe

__all__ = ["exporter", "health"]


def _heartbeat_target(ctx: click.Context) -> tuple[str | None, str | None]:
    """The heartbeat path and app name: from the app when one is at hand, else the env."""
    obj = ctx.find_object(object)
    named = isinstance(ctx.obj, dict) and (ctx.obj.get("app") or ctx.obj.get("app_name"))
    if getattr(obj, "app", None) is not None or named:
        try:
            configured = settings_from(ctx).health.heartbeat_file
            app_name = str(app_of(ctx).main or "") or None
        except click.ClickException:  # a kit error, or no app (a UsageError)
            configured, app_name = None, None  # `celery kit health` without -A
        if configured or app_name:
            return configured, app_name
    return os.environ.get(HEARTBEAT_FILE_ENV) or None, None


def _beat_heartbeat_file(ctx: click.Context) -> str:
    """The beat heartbeat: the app's ``beat.heartbeat_file`` when an app is at hand, else
    the environment, else the default file."""
    obj = ctx.find_object(object)
    named = isinstance(ctx.obj, dict) and (ctx.obj.get("app") or ctx.obj.get("app_name"))
    if getattr(obj, "app", None) is not None or named:
        try:
            configured = settings_from(ctx).beat.heartbeat_file
        except click.ClickException:
            configured = None
        if configured:
            return configured
    return os.environ.get(BEAT_HEARTBEAT_FILE_ENV) or default_beat_heartbeat_file()


@click.command(name="health")
@click.option("--liveness", "kind", flag_value="liveness", help="Probe: is the worker consuming?")
@click.option("--readiness", "kind", flag_value="readiness", help="Probe: can it work now?")
@click.option(
    "--max-age",
    "max_age_s",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds (default: health.max_age_s).",
)
@click.option("--file", "file_", help="Heartbeat file or %n template (default: the setting).")
@click.option("--node", help="Probe only this worker (node name: celery or celery@host).")
@click.option("--app-name", help="Probe only this app's workers (default: the -A app's name).")
@click.option("--beat", "of_beat", is_flag=True, help="Probe the beat process's heartbeat.")
@click.option("--json", "as_json", is_flag=True, help="Deployment report as JSON.")
@click.option(
    "--min-workers",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Report: fewer fails.",
)
@click.option(
    "--max-oldest-age",
    "max_oldest_age_s",
    type=click.FloatRange(min=0),
    help="Report: older fails.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=2.0,
    show_default=True,
)
@click.pass_context
def health(
    ctx: click.Context,
    kind: str | None,
    max_age_s: float | None,
    file_: str | None,
    node: str | None,
    app_name: str | None,
    of_beat: bool,
    as_json: bool,
    min_workers: int,
    max_oldest_age_s: float | None,
    timeout_s: float,
) -> None:
    """Probe this host's worker (exit 0 ok, 1 failing) or, without a flag, the deployment.

    Kubernetes: `celery-kit health --liveness` (or `python -m celery_kit.health
    --liveness`) in an exec probe. Without --liveness/--readiness: workers seen, queue
    depths and oldest-message ages (needs -A).
    """
    if of_beat:  # the beat loop ran recently (docs/beat.md); a live beat is ready
        file_, kind = file_ or _beat_heartbeat_file(ctx), "liveness"
    if kind is not None:
        configured, own_app = _heartbeat_target(ctx) if file_ is None else (file_, None)
        result = probe(
            "liveness" if kind == "liveness" else "readiness",
            file=configured,
            max_age_s=max_age_s,
            node=node,
            app_name=app_name or own_app,
        )
        click.echo(result.message)
        ctx.exit(0 if result.ok else 1)
    # deferred: the report needs Celery and the kit's Redis
    from celery_kit.exceptions import CeleryKitError
    from celery_kit.observability.report import deployment_report, report_problems

    try:
        report = deployment_report(app_of(ctx), timeout_s=timeout_s)
    except CeleryKitError as exc:
        raise click.ClickException(str(exc)) from None
    problems = report_problems(report, min_workers=min_workers, max_oldest_age_s=max_oldest_age_s)
    report["problems"] = problems
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        _print_report(report)
    ctx.exit(1 if problems else 0)


def _print_report(report: dict[str, Any]) -> None:
    workers = report["workers"]
    click.echo(f"workers seen ({report['workers_source']}): {len(workers)}")
    for name, beat in sorted(workers.items()):
        queues = ",".join(beat.get("queues") or []) if isinstance(beat, dict) else ""
        click.echo(f"  {name}  {queues}")
    click.echo("queues:")
    for name, q in sorted(report["queues"].items()):
        age = q.get("oldest_age_s")
        shown = "-" if age is None else f"{age:.1f} s"
        count = "?" if q.get("messages") is None else q["messages"]
        click.echo(f"  {name}: {count} waiting, oldest {shown}")
    for problem in report["problems"]:
        click.echo(f"PROBLEM: {problem}")
    if not report["problems"]:
        click.echo("ok")


@click.command(name="exporter")
@click.option("--address", default=None, help="Listen address (default: metrics.address).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Listen port, 0 = any free one (default: metrics.port).",
)
@click.option("--once", is_flag=True, help="Sample once, print the metrics and exit.")
@click.pass_context
def exporter(ctx: click.Context, address: str | None, port: int | None, once: bool) -> None:
    """Serve celery_queue_length for every queue of the app (run ONE per deployment)."""
    # deferred: the exporter (Celery, prometheus_client) loads only when the command runs
    from celery_kit.observability.exporter import run_exporter

    app = app_of(ctx)
    conf = settings_from(ctx).metrics
    body = run_exporter(
        app,
        address=address if address is not None else conf.address,
        port=port if port is not None else conf.port,
        once=once,
    )
    if body is not None:
        click.echo(body.decode(), nl=False)
