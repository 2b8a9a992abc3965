"""``kit workers`` (one ``celery worker`` command per profile) and ``kit worker NAME`` (exec it).

Only click at import time; each command imports the kit when it runs.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import click

from celery_kit.cli.context import app_ref, forwarded_options, settings_from

if TYPE_CHECKING:
    from celery_kit.config.profiles import WorkerProfile

__all__ = ["worker_cmd", "workers_cmd"]


def _profiles(ctx: click.Context) -> dict[str, WorkerProfile]:
    # deferred: the kit loads only when the command runs
    from celery_kit.topology.workers import effective_profiles

    profiles, derived = effective_profiles(settings_from(ctx))
    if derived:
        ((name, profile),) = profiles.items()
        click.echo(
            f"celery_kit: no [workers.*] profiles; derived profile {name!r} from the declared"
            f" queues ({', '.join(profile.queues)}; prefetch 1). Declare [workers.NAME]"
            " tables to split queues between workers (docs/topology.md).",
            err=True,
        )
    return profiles


@click.command(name="workers")
@click.option("--json", "as_json", is_flag=True, help="argv and env per profile.")
@click.pass_context
def workers_cmd(ctx: click.Context, as_json: bool) -> None:
    """Print one `celery worker` command per worker profile (Procfile lines)."""
    # deferred: the kit loads only when the command runs
    from celery_kit.topology.workers import render_command, worker_argv, worker_env

    profiles, ref = _profiles(ctx), app_ref(ctx)
    if as_json:
        out = {
            name: {"argv": worker_argv(name, profile=p, app=ref), "env": worker_env(p)}
            for name, p in profiles.items()
        }
        click.echo(json.dumps(out, indent=2))
        return
    for name, profile in profiles.items():
        click.echo(f"{name}: {render_command(name, profile=profile, app=ref)}")


@click.command(
    name="worker", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.argument("name")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def worker_cmd(ctx: click.Context, name: str, extra: tuple[str, ...]) -> None:
    """Run the worker of profile NAME (exec; extra arguments go to `celery worker`)."""
    # deferred: the kit loads only when the command runs
    from celery_kit.observability.multiproc import worker_environ
    from celery_kit.topology.workers import worker_argv, worker_env

    profiles = _profiles(ctx)
    if name not in profiles:
        raise click.BadParameter(f"no profile {name!r}; profiles: {', '.join(profiles)}")
    argv = worker_argv(
        name,
        profile=profiles[name],
        app=app_ref(ctx),
        celery=(sys.executable, "-m", "celery"),
        global_options=forwarded_options(ctx),
        extra=extra,
    )
    env = {**os.environ, **worker_env(profiles[name])}
    # prometheus_client must see its multiprocess directory before it is first imported
    env.update(worker_environ(settings_from(ctx), env))
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)
