"""``kit flower``: run Flower with the ``[flower]`` preset, authentication required.

Only click at import time; the command imports the kit when it runs.
"""

from __future__ import annotations

import os
import sys

import click

from celery_kit.cli.context import app_ref, forwarded_options, settings_from

__all__ = ["flower_cmd"]


@click.command(
    name="flower", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.option("--basic-auth-file", help="File of user:password lines (default: the setting).")
@click.option("--generate-credentials", is_flag=True, help="Create a login, print it once.")
@click.option("--allow-insecure", is_flag=True, help="Start even without authentication.")
@click.option("--address", default=None, help="Listen address (default: flower.address).")
@click.option("--port", type=click.IntRange(1, 65535), help="Listen port (default: flower.port).")
@click.option("--dry-run", is_flag=True, help="Print the Flower command (secrets masked).")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def flower_cmd(
    ctx: click.Context,
    basic_auth_file: str | None,
    generate_credentials: bool,
    allow_insecure: bool,
    address: str | None,
    port: int | None,
    dry_run: bool,
    extra: tuple[str, ...],
) -> None:
    """Run Flower with the [flower] preset: authentication required (exec; docs/flower.md)."""
    # deferred: the kit loads only when the command runs
    from celery_kit.exceptions import CeleryKitError
    from celery_kit.integrations.flower import flower_launch

    given = {"address": address, "port": port, "basic_auth_file": basic_auth_file}
    overrides = {k: v for k, v in given.items() if v is not None}
    if allow_insecure:
        overrides["allow_insecure"] = True
    if generate_credentials and dry_run:
        raise click.UsageError("--generate-credentials writes the login: drop --dry-run")
    settings = settings_from(ctx).flower.model_copy(update=overrides)
    try:
        launch = flower_launch(
            settings,
            app=app_ref(ctx),
            environ=os.environ,
            celery=(sys.executable, "-m", "celery"),
            global_options=forwarded_options(ctx),
            extra=extra,
            generate=generate_credentials,
        )
    except CeleryKitError as exc:
        raise click.ClickException(str(exc)) from None
    for notice in launch.notices:
        click.echo(f"celery_kit flower: {notice}", err=True)
    if dry_run:
        click.echo(launch.describe())
        return
    if launch.generated:  # the only secret the kit ever prints: one it just made
        where = settings.basic_auth_file or "nowhere: valid for this run only"
        click.echo(f"celery_kit flower: generated login (shown once, stored in {where}):")
        click.echo(f"  {launch.generated}")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(launch.argv), launch.env)
