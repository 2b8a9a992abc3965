"""The ``kit`` command group: ``celery -A proj kit …`` and the ``celery-kit`` script.

Imported by every ``celery`` command through the ``celery.commands`` entry point, so this
package imports only click at load time; each command imports what it needs when it runs.
One module per command family; :mod:`.context` is what they share.
"""

from __future__ import annotations

import sys

import click

from celery_kit.cli.beat import beat
from celery_kit.cli.delays import delays, mover
from celery_kit.cli.dlq import dlq
from celery_kit.cli.doctor import check, doctor
from celery_kit.cli.flower import flower_cmd
from celery_kit.cli.observe import exporter, health
from celery_kit.cli.render import render_cmd
from celery_kit.cli.settings_cmds import config_cmd, defaults_cmd, defaults_table, mask
from celery_kit.cli.workers import worker_cmd, workers_cmd

__all__ = ["defaults_table", "kit", "main", "mask"]


_TRACEBACK_HELP = "Show the full traceback of a kit error (also: CELERY_KIT_DEBUG=1)."


@click.group(name="kit", help="celery_kit: inspect and operate a kit-configured app.")
@click.option("--traceback", is_flag=True, help=_TRACEBACK_HELP)
def kit(traceback: bool) -> None:
    """Group registered under ``celery`` (``celery -A proj kit …``).

    ``--traceback`` is read from the command line by :mod:`celery_kit.console` (the app
    is imported before this group runs); it is declared here so click accepts it.
    """


@click.group(
    name="celery-kit", help="celery_kit command line (same commands as `celery -A proj kit`)."
)
@click.option("-A", "--app", "app_name", help="Module of the app, e.g. proj.celery:app.")
@click.option("--traceback", is_flag=True, help=_TRACEBACK_HELP)
@click.pass_context
def main(ctx: click.Context, app_name: str | None, traceback: bool) -> None:
    """Stand-alone entry point (``celery-kit``)."""
    sys.path.insert(0, "")  # like `celery -A`: the app module is found from the cwd
    ctx.obj = {"app_name": app_name}


for _command in (
    config_cmd,
    defaults_cmd,
    workers_cmd,
    worker_cmd,
    flower_cmd,
    dlq,
    delays,
    mover,
    health,
    exporter,
    doctor,
    check,
    render_cmd,
    beat,
):
    kit.add_command(_command)
    main.add_command(_command)
