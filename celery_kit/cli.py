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


@click.group(
    name="celery-kit", help="celery_kit command line (same commands as `celery -A proj kit`)."
)
@click.option("-A", "--app", "app_name", help="Module of the app, e.g. proj.celery:app.")
@click.pass_context
def main(ctx: click.Context, app_name: str | None) -> None:
    """Stand-alone entry point (``celery-kit``)."""
    sys.path.insert(0, "")  # like `celery -A`: the app module is found from the cwd
    ctx.obj = {"app_name": app_name}


for _command in kit.commands.values():
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover - `python -m celery_kit.cli`
    main()
