"""The ``kit`` command group: ``celery -A proj kit …`` and the ``celery-kit`` script.

Imported by every ``celery`` command through the ``celery.commands`` entry point, so
this module imports only click at load time; each command imports what it needs.
"""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["kit", "main"]

_SECRET_KEY = re.compile(r"pass|secret|token|credential|auth", re.IGNORECASE)


def _app(ctx: click.Context) -> Celery:
    """The app from ``celery -A`` (``ctx.obj.app``) or ``celery-kit --app``."""
    obj = ctx.find_object(object)
    app = getattr(obj, "app", None)
    if app is None and isinstance(ctx.obj, dict) and ctx.obj.get("app_name"):
        from celery.app.utils import find_app

        app = find_app(ctx.obj["app_name"])
        ctx.obj["app"] = app
    elif app is None and isinstance(ctx.obj, dict):
        app = ctx.obj.get("app")
    if app is None:
        raise click.UsageError(
            "this command needs an app: celery -A proj kit … or celery-kit -A proj …"
        )
    return app  # type: ignore[no-any-return]


def mask(value: Any, *, key: str = "") -> Any:
    """Hide passwords in URLs and values of secret-looking keys, recursively."""
    if isinstance(value, dict):
        return {k: mask(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask(v, key=key) for v in value)
    if key and _SECRET_KEY.search(key) and value not in (None, "", False):
        return "********"
    if isinstance(value, str) and "://" in value and "@" in value:
        from kombu.utils.url import maybe_sanitize_url

        return ";".join(maybe_sanitize_url(part, mask="********") for part in value.split(";"))
    return value


def _render(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True) if not isinstance(value, str) else value


@click.group(name="kit", help="celery_kit: inspect and operate a kit-configured app.")
def kit() -> None:
    """Group registered under ``celery`` (``celery -A proj kit …``)."""


@kit.command(name="config")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def config_cmd(ctx: click.Context, as_json: bool) -> None:
    """Print every Celery key the kit sets, its value and where it came from."""
    from celery_kit.app import settings_of
    from celery_kit.conf import build_conf, redelivery_budget
    from celery_kit.exceptions import CeleryKitError

    try:
        settings = settings_of(_app(ctx))
        conf = build_conf(settings)
    except CeleryKitError as exc:
        raise click.ClickException(str(exc)) from None
    rows = [
        (key, mask(entry.value, key=key), str(entry.origin)) for key, entry in sorted(conf.items())
    ]
    if as_json:
        click.echo(
            json.dumps({k: {"value": v, "origin": o} for k, v, o in rows}, default=str, indent=2)
        )
        return
    width = max(len(k) for k, _, _ in rows)
    for key, value, origin in rows:
        click.echo(f"{key:<{width}}  {_render(value)}  [{origin}]")
    budget = redelivery_budget(settings, conf)
    click.echo(f"\nredelivery budget: {budget.explain()}")


@kit.command(name="defaults")
@click.option("--markdown", is_flag=True, help="The README table.")
def defaults_cmd(markdown: bool) -> None:
    """Print the Celery defaults the kit changes and why (no app needed)."""
    click.echo(
        defaults_table()
        if markdown
        else "\n".join(
            f"{d.key} = {d.value!r} (Celery: {d.celery_default!r}) — {d.why}"
            for d in _safe_defaults()
        )
    )


def _safe_defaults() -> Any:
    from celery_kit.defaults import SAFE_DEFAULTS

    return SAFE_DEFAULTS


def defaults_table() -> str:
    """Markdown table of ``SAFE_DEFAULTS`` (the README embeds it verbatim)."""
    lines = [
        "| Celery setting | Celery default | celery_kit | kit setting | why |",
        "|---|---|---|---|---|",
    ]
    for d in _safe_defaults():
        setting = f"`{d.setting}`" if d.setting else "—"
        lines.append(
            f"| `{d.key}` | `{d.celery_default!r}` | `{d.value!r}` | {setting} | {d.why} |"
        )
    return "\n".join(lines)


def _app_ref(ctx: click.Context) -> str:
    """The ``-A`` value the command was started with, to repeat in worker commands."""
    root = ctx.find_root()
    ref = root.params.get("app")
    if not isinstance(ref, str) and isinstance(ctx.obj, dict):
        ref = ctx.obj.get("app_name")
    if not isinstance(ref, str) or not ref:
        raise click.UsageError("name the app with -A: celery -A proj kit workers")
    return ref


def _profiles(ctx: click.Context) -> Any:
    from celery_kit.app import settings_of
    from celery_kit.exceptions import CeleryKitError

    try:
        profiles = settings_of(_app(ctx)).workers
    except CeleryKitError as exc:
        raise click.ClickException(str(exc)) from None
    if not profiles:
        raise click.ClickException(
            "no worker profiles: declare them as [workers.NAME] tables with queues = [...]"
            " (see docs/topology.md)"
        )
    return profiles


@kit.command(name="workers")
@click.option("--json", "as_json", is_flag=True, help="argv and env per profile.")
@click.pass_context
def workers_cmd(ctx: click.Context, as_json: bool) -> None:
    """Print one `celery worker` command per worker profile (Procfile lines)."""
    from celery_kit.workers import render_command, worker_argv, worker_env

    profiles, ref = _profiles(ctx), _app_ref(ctx)
    if as_json:
        out = {
            name: {"argv": worker_argv(name, profile=p, app=ref), "env": worker_env(p)}
            for name, p in profiles.items()
        }
        click.echo(json.dumps(out, indent=2))
        return
    for name, profile in profiles.items():
        click.echo(f"{name}: {render_command(name, profile=profile, app=ref)}")


@kit.command(
    name="worker", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.argument("name")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def worker_cmd(ctx: click.Context, name: str, extra: tuple[str, ...]) -> None:
    """Run the worker of profile NAME (exec; extra arguments go to `celery worker`)."""
    import os

    from celery_kit.workers import worker_argv, worker_env

    profiles = _profiles(ctx)
    if name not in profiles:
        raise click.BadParameter(f"no profile {name!r}; profiles: {', '.join(profiles)}")
    root = ctx.find_root().params
    forwarded = [
        f"--{option.replace('_', '-')}={root[option]}"
        for option in ("broker", "result_backend", "loader", "config")
        if isinstance(root.get(option), str)
    ]
    argv = worker_argv(
        name,
        profile=profiles[name],
        app=_app_ref(ctx),
        celery=(sys.executable, "-m", "celery"),
        global_options=forwarded,
        extra=extra,
    )
    env = {**os.environ, **worker_env(profiles[name])}
    # prometheus_client must see its multiprocess directory before it is first imported
    from celery_kit.app import settings_of
    from celery_kit.metrics_multiproc import worker_environ

    env.update(worker_environ(settings_of(_app(ctx)), env))
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)


@kit.command(
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
    import os

    from celery_kit.app import settings_of
    from celery_kit.exceptions import CeleryKitError
    from celery_kit.flower import flower_launch

    root = ctx.find_root().params
    forwarded = [
        f"--{option.replace('_', '-')}={root[option]}"
        for option in ("broker", "result_backend", "loader", "config")
        if isinstance(root.get(option), str)
    ]
    given = {"address": address, "port": port, "basic_auth_file": basic_auth_file}
    overrides = {k: v for k, v in given.items() if v is not None}
    if allow_insecure:
        overrides["allow_insecure"] = True
    if generate_credentials and dry_run:
        raise click.UsageError("--generate-credentials writes the login: drop --dry-run")
    try:
        settings = settings_of(_app(ctx)).flower.model_copy(update=overrides)
        launch = flower_launch(
            settings,
            app=_app_ref(ctx),
            environ=os.environ,
            celery=(sys.executable, "-m", "celery"),
            global_options=forwarded,
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


@click.group(
    name="celery-kit", help="celery_kit command line (same commands as `celery -A proj kit`)."
)
@click.option("-A", "--app", "app_name", help="Module of the app, e.g. proj.celery:app.")
@click.pass_context
def main(ctx: click.Context, app_name: str | None) -> None:
    """Stand-alone entry point (``celery-kit``)."""
    sys.path.insert(0, "")  # like `celery -A`: the app module is found from the cwd
    ctx.obj = {"app_name": app_name}


def _add_dlq() -> None:
    from celery_kit.cli_dlq import dlq  # click-only module: cheap to import

    kit.add_command(dlq)


_add_dlq()


def _add_observe() -> None:
    from celery_kit.cli_observe import exporter, health  # click-only module: cheap to import

    kit.add_command(health)
    kit.add_command(exporter)


_add_observe()

for _command in kit.commands.values():
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover - `python -m celery_kit.cli`
    main()
