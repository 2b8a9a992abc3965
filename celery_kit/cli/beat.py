"""``celery -A proj kit beat``: check the schedule, then exec ``celery beat`` with the kit's
scheduler. Imported by :mod:`celery_kit.cli` (so by every ``celery`` command): only click
and the context helpers at load time."""

from __future__ import annotations

import sys

import click

from celery_kit.cli.context import app_of, app_ref, forwarded_options, settings_from

__all__ = ["beat"]


@click.command(
    name="beat", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.option("--dry-run", is_flag=True, help="Check the schedule, print the command, exit.")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def beat(ctx: click.Context, dry_run: bool, extra: tuple[str, ...]) -> None:
    """Run beat with RedBeat as configured by [beat] (exec; docs/beat.md).

    Refuses to start when an entry names a task no module registers. Several replicas may
    run: one leads and sends, the others stand by.
    """
    import os
    import shlex

    # deferred: the kit (pydantic, Celery) loads only when the command runs
    from celery_kit.beat.checks import unregistered_entries
    from celery_kit.exceptions import CeleryKitError

    settings = settings_from(ctx)
    try:
        problems = unregistered_entries(app_of(ctx))
    except CeleryKitError as exc:
        raise click.ClickException(str(exc)) from None
    if not settings.beat.active:
        raise click.ClickException(
            "beat is not configured: declare entries as [beat.schedule.NAME] tables (or set"
            " beat.enabled = true); see docs/beat.md"
        )
    if problems:
        raise click.ClickException("invalid beat schedule:\n  - " + "\n  - ".join(problems))
    argv = [sys.executable, "-m", "celery", "-A", app_ref(ctx), *forwarded_options(ctx), "beat"]
    argv += ["--scheduler", "celery_kit.beat.scheduler:KitScheduler", *extra]
    if dry_run:
        click.echo(shlex.join(argv))
        return
    sys.stdout.flush()
    os.execv(sys.executable, argv)
