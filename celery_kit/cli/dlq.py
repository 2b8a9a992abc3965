"""``celery -A proj kit dlq list|show|replay|purge``: inspect and replay dead letters.

Imported by :mod:`celery_kit.cli` (so by every ``celery`` command): only click at load
time; the store is imported when a command runs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from celery_kit.cli.context import app_of

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.coordination.dead_letter import DeadLetter
    from celery_kit.coordination.dlq import DeadLetterStore

__all__ = ["dlq"]

#: Same value as ``celery_kit.coordination.dead_letter.MALFORMED`` (not imported: this
#: module loads with every ``celery`` command and must stay cheap).
MALFORMED = "malformed"


def _open(ctx: click.Context) -> tuple[Celery, DeadLetterStore]:
    # deferred: the store (redis, Celery) loads only when a command runs
    from celery_kit.coordination.dlq import DeadLetterStore
    from celery_kit.exceptions import CeleryKitError

    app = app_of(ctx)
    try:
        return app, DeadLetterStore(app)
    except CeleryKitError as exc:
        raise click.ClickException(str(exc)) from None


def _as_dict(entry: DeadLetter) -> dict[str, Any]:
    # deferred: kombu loads only when a command runs
    from celery_kit.coordination.dead_letter import entry_json

    return entry_json(entry)


@click.group(name="dlq", help="Dead-lettered tasks: list, show, replay, purge.")
def dlq() -> None:
    """The ``kit dlq`` group."""


_REASON_HELP = (
    "Only entries with this reason (permanent, retries_exhausted, worker_lost, time_limit,"
    " failed, not_registered, malformed)."
)


@dlq.command(name="list")
@click.option("--task", "task_name", help="Only entries of this task name.")
@click.option("--reason", help=_REASON_HELP)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="At most this many (newest first)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def list_cmd(
    ctx: click.Context, task_name: str | None, reason: str | None, limit: int | None, as_json: bool
) -> None:
    """List dead letters, newest first, with why each was dead-lettered."""
    _, store = _open(ctx)
    entries = store.list(task=task_name, limit=limit, reason=reason)
    if as_json:
        click.echo(json.dumps([_as_dict(e) for e in entries], indent=2, default=str))
        return
    if not entries:
        click.echo("no dead letters")
        return
    for e in entries:
        click.echo(
            f"{e.id}  {e.task}  {e.reason}  attempts={e.attempts}  {e.dead_lettered_at}"
            f"  {e.exception_type.rsplit('.', 1)[-1]}: {e.exception[:80]}"
        )
    click.echo(f"{len(entries)} dead letter(s)")


def _entry(store: DeadLetterStore, id_or_prefix: str) -> DeadLetter:
    """The entry for a full id or an unambiguous id prefix; otherwise a precise error."""
    # deferred: the kit loads only when the command runs
    from celery_kit.exceptions import DeadLetterLookupError

    try:
        entry = store.get(store.resolve(id_or_prefix))
    except DeadLetterLookupError as exc:
        raise click.ClickException(str(exc)) from None
    if entry is None:  # expired between the two reads
        raise click.ClickException(f"dead letter {id_or_prefix} expired just now")
    return entry


@dlq.command(name="show")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@click.pass_context
def show_cmd(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Show one dead letter with its arguments and traceback."""
    _, store = _open(ctx)
    entry = _entry(store, task_id)
    data = _as_dict(entry)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    tb, payload = data.pop("traceback"), data.pop("payload", None)
    if entry.reason == MALFORMED:
        click.echo(f"what was wrong: {entry.exception}")
        click.echo("(a malformed message cannot be replayed; fix its sender)\n")
    for key, value in data.items():
        click.echo(f"{key:>17}: {json.dumps(value, default=str)}")
    if payload is not None:
        click.echo(f"\nmessage as received (truncated):\n{payload}")
    if tb:
        click.echo(f"\n{tb}")


@dlq.command(name="replay")
@click.argument("task_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every entry.")
@click.option("--task", "task_name", help="With --all: only entries of this task name.")
@click.pass_context
def replay_cmd(
    ctx: click.Context, task_id: str | None, replay_all: bool, task_name: str | None
) -> None:
    """Publish dead letters again (same id, original queue/priority), then remove them."""
    if bool(task_id) == replay_all:
        raise click.UsageError("give one TASK_ID, or --all [--task NAME]")
    if task_name and not replay_all:
        raise click.UsageError("--task filters --all; with a TASK_ID it is not needed")
    app, store = _open(ctx)
    entries = [_entry(store, task_id)] if task_id else store.list(task=task_name)
    if task_id and entries[0].reason == MALFORMED:
        raise click.ClickException(
            f"{task_id} is a malformed message ({entries[0].exception}): there is no valid"
            f" task to replay. See it with `kit dlq show {task_id}`, fix the sender, then"
            f" `kit dlq purge --reason {MALFORMED}`"
        )
    skipped = [e for e in entries if e.reason == MALFORMED]
    entries = [e for e in entries if e.reason != MALFORMED]
    for entry in entries:
        store.replay(app, entry)
        click.echo(f"replayed {entry.id} ({entry.task})")
    if skipped:
        click.echo(
            f"skipped {len(skipped)} malformed message(s): nothing valid to replay"
            f" (`kit dlq list --reason {MALFORMED}`)"
        )
    if not entries and not skipped:
        click.echo("nothing to replay")


@dlq.command(name="purge")
@click.option("--task", "task_name", help="Only entries of this task name.")
@click.option("--reason", help=_REASON_HELP)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def purge_cmd(ctx: click.Context, task_name: str | None, reason: str | None, yes: bool) -> None:
    """Delete dead letters (all, or one task's, or one reason's)."""
    _, store = _open(ctx)
    what = f"every dead letter of {task_name}" if task_name else "every dead letter"
    if reason:
        what += f" with reason {reason}"
    if not yes:
        click.confirm(f"Delete {what}?", abort=True)
    click.echo(f"purged {store.purge(task=task_name, reason=reason)} dead letter(s)")
