"""``celery -A proj kit delays list|count|show|cancel`` and ``kit mover``.

Imported by :mod:`celery_kit.cli`: only click at load time.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click

from celery_kit.cli.context import app_of

if TYPE_CHECKING:
    from celery_kit.delays.ops import DelaySet

__all__ = ["delays", "mover"]


def _open(ctx: click.Context) -> DelaySet:
    # deferred: kombu/redis load only when a command runs
    from celery_kit.delays.ops import DelaySet
    from celery_kit.exceptions import CeleryKitError

    try:
        return DelaySet(app_of(ctx))
    except CeleryKitError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(name="delays", help="Tasks waiting for their countdown/ETA in the delay set.")
def delays() -> None:
    """The ``kit delays`` group."""


@delays.command(name="count")
@click.pass_context
def count_cmd(ctx: click.Context) -> None:
    """How many tasks wait in the delay set."""
    with _open(ctx) as ds:
        click.echo(str(ds.count()))


@delays.command(name="list")
@click.option("--task", "task_name", help="Only tasks of this name.")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def list_cmd(ctx: click.Context, task_name: str | None, limit: int, as_json: bool) -> None:
    """List waiting tasks, earliest due first."""
    # deferred: see _open
    from celery_kit.delays.ops import describe

    with _open(ctx) as ds:
        now = time.time()
        rows = [describe(i, now) for i in ds.list(limit=limit, task=task_name)]
        total = ds.count()
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        click.echo(f"{r['id']}  {r['task']}  queue={r['queue']}  due={r['due_at']}"
                   f"  in {r['due_in_s']:g} s")  # fmt: skip
    click.echo(f"{len(rows)} shown, {total} delayed task(s)")


@delays.command(name="show")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@click.pass_context
def show_cmd(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Show one waiting task."""
    # deferred: see _open
    from celery_kit.delays.ops import describe

    with _open(ctx) as ds:
        item = ds.get(task_id)
    if item is None:
        raise click.ClickException(
            f"no delayed task {task_id!r} (already moved to its queue, cancelled, or never"
            " delayed); `kit delays list` shows what waits"
        )
    row = describe(item, time.time())
    if as_json:
        click.echo(json.dumps(row, indent=2, default=str))
        return
    for key, value in row.items():
        click.echo(f"{key}: {value}")


@delays.command(name="cancel")
@click.argument("task_id")
@click.pass_context
def cancel_cmd(ctx: click.Context, task_id: str) -> None:
    """Remove a waiting task; its result becomes REVOKED."""
    with _open(ctx) as ds:
        item = ds.cancel(task_id)
    if item is None:
        raise click.ClickException(
            f"no delayed task {task_id!r} to cancel (already moved to its queue: revoke it"
            " with `celery -A proj control revoke ID`; or never delayed)"
        )
    click.echo(f"cancelled {task_id} ({item.task_name}); its result is REVOKED")


@click.command(name="mover", help="Move due delayed tasks to their queues (leader-elected).")
@click.pass_context
def mover(ctx: click.Context) -> None:
    """Run a mover until SIGTERM/SIGINT (only the leader among all movers moves)."""
    # deferred: the mover (redis, kombu) loads only when the command runs
    import logging
    import signal

    from celery_kit.delays.mover import Mover
    from celery_kit.exceptions import CeleryKitError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app = app_of(ctx)
    try:
        m = Mover(app)
        m._channel()  # refuse at once when the app has no delay set
    except (CeleryKitError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    signal.signal(signal.SIGTERM, lambda *_: m.request_stop())
    click.echo(f"celery_kit mover: every {m.interval_s:g} s, batches of {m.batch}", err=True)
    try:
        m.run()
    except KeyboardInterrupt:
        m.stop()
