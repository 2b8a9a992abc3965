"""``celery -A proj kit render TARGET [-o DIR]`` (click only at import time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from celery_kit.config.settings import Settings

__all__ = ["render_cmd"]

_CHOICES = ["k8s", "keda", "compose", "systemd", "procfile", "alerts", "dashboard", "all"]


def _settings(ctx: click.Context, config: str | None) -> tuple[Settings, str | None]:
    """Settings (of the app, or of ``--config`` alone) and the ``-A`` value if known."""
    from celery_kit.cli.context import app_of, app_ref

    if config is not None:
        from celery_kit.config.settings import Settings

        ref = ctx.find_root().params.get("app") or (
            ctx.obj.get("app_name") if isinstance(ctx.obj, dict) else None
        )
        return Settings(_config=config), ref if isinstance(ref, str) else None
    from celery_kit.state import settings_of

    settings = settings_of(app_of(ctx))
    return settings, settings.deploy.app or app_ref(ctx)


@click.command(name="render")
@click.argument("target", type=click.Choice(_CHOICES))
@click.option("-o", "--output", "output", help="Write the files under this directory.")
@click.option("--config", help="Render this TOML file (and the environment) without an app.")
@click.pass_context
def render_cmd(ctx: click.Context, target: str, output: str | None, config: str | None) -> None:
    """Render deploy files from the settings (stdout, or files under -o DIR; docs/deploy.md)."""
    from celery_kit.exceptions import CeleryKitError
    from celery_kit.render import render, write

    try:
        settings, ref = _settings(ctx, config)
        app = settings.deploy.app or ref
        if app is None:
            raise click.UsageError("name the app: set deploy.app in the config, or pass -A")
        files = render(target, settings, app=app)
    except CeleryKitError as exc:
        raise click.ClickException(str(exc)) from None
    if output is None:
        for name, text in sorted(files.items()):
            if len(files) > 1:
                click.echo(f"# ---- {name}")
            click.echo(text, nl=False)
        return
    for path in write(files, output):
        click.echo(f"wrote {path}", err=True)
