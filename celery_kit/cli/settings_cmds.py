"""``kit config`` (every Celery key the kit sets, with its origin) and ``kit defaults``.

Only click at import time; each command imports the kit when it runs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from celery_kit.cli.context import settings_from
from celery_kit.masking import mask

if TYPE_CHECKING:
    from celery_kit.config.settings import Settings

__all__ = ["config_cmd", "defaults_cmd", "defaults_table", "mask"]


def _render(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True) if not isinstance(value, str) else value


@click.command(name="config")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def config_cmd(ctx: click.Context, as_json: bool) -> None:
    """Print every Celery key the kit sets, its value and where it came from."""
    # deferred: the kit's configuration (pydantic, Celery) loads only when the command runs
    from celery_kit.config.celery_conf import build_conf, redelivery_budget
    from celery_kit.exceptions import CeleryKitError

    settings = settings_from(ctx)
    try:
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
    if settings.uses_kit_transport:
        from celery_kit.config.renewal import kit_visibility_timeout, renewal_budget

        timeout = kit_visibility_timeout(settings, settings.broker.visibility_timeout_s)
        click.echo("\nbroker transport: kit (celery_kit.transport; broker.transport)")
        click.echo(f"redelivery: {renewal_budget(settings).explain(timeout)}")
        click.echo(f"delays: {_delays_line(settings)}")
        return
    if settings.is_redis_broker:
        click.echo('\nbroker transport: kombu (broker.transport = "kombu")')
    budget = redelivery_budget(settings, conf)
    click.echo(f"\nredelivery budget: {budget.explain()}")


def _delays_line(settings: Settings) -> str:
    d = settings.delays
    if not settings.uses_delay_set:
        return (
            f"workers hold countdowns/ETAs up to tasks.max_countdown_s"
            f" ({settings.tasks.max_countdown_s:g} s; delays.enabled = false)"
        )
    return (
        f"countdowns/ETAs more than {d.effective_threshold_s:g} s ahead (delays.threshold_s ="
        f" mover_interval_s {d.mover_interval_s:g} s + 3 s) wait in the delay set, not in a"
        f" worker; accepted up to delays.max_delay_s ({d.max_delay_s:g} s); the budget"
        " counts only the threshold"
    )


@click.command(name="defaults")
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
    # deferred: celery_kit.config (pydantic) loads only when the command runs
    from celery_kit.config.defaults import SAFE_DEFAULTS

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
