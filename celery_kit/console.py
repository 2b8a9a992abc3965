"""A kit refusal under the ``celery``/``celery-kit`` command line: one short block, exit 2.

Celery turns any exception raised while it imports ``-A proj`` into ``Couldn't import
'proj'`` after the whole traceback (``celery/bin/celery.py`` catches ``Exception`` around
``find_app``), and a worker bootstep's exception into ``Unrecoverable error`` with another.
:func:`refusals` runs where the kit raises (``make_app``, task binding, the worker's
start-up checks); under the command line it prints the error block and raises
``SystemExit(EXIT_CONFIG)``, which Celery lets through (it is not an ``Exception``).
Elsewhere (tests, a web process importing the app) the exception propagates unchanged.
"""

from __future__ import annotations

import contextvars
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from celery_kit.exceptions import CeleryKitError

__all__ = [
    "DEBUG_ENV",
    "EXIT_CONFIG",
    "caller_reports",
    "error_block",
    "refusals",
    "show_traceback",
]

#: Exit status of a process the kit refused to start (configuration, task options,
#: start-up checks). Documented in the README; ``click`` uses 2 for usage errors too.
EXIT_CONFIG = 2

#: ``CELERY_KIT_DEBUG=1``: let kit errors propagate with their full traceback.
DEBUG_ENV = "CELERY_KIT_DEBUG"

#: Command names whose processes get the short block instead of a traceback.
_COMMANDS = frozenset({"celery", "celery-kit"})

#: Set while a command that reports kit errors itself (``kit check``) loads the app.
_CALLER_REPORTS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "celery_kit_caller_reports", default=False
)


@contextmanager
def caller_reports() -> Iterator[None]:
    """Within this block kit errors propagate even on the command line: the caller
    (e.g. ``kit check``, which lists every refusal) reports them its own way."""
    token = _CALLER_REPORTS.set(True)
    try:
        yield
    finally:
        _CALLER_REPORTS.reset(token)


def show_traceback(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """True when the user asked for tracebacks: ``CELERY_KIT_DEBUG=1`` or ``--traceback``."""
    env = os.environ if environ is None else environ
    args = sys.argv[1:] if argv is None else argv
    return env.get(DEBUG_ENV, "").lower() in ("1", "true", "yes") or "--traceback" in args


def error_block(exc: BaseException) -> str:
    """The error as the user should read it: what is wrong, where it was set, what to do."""
    kind = "configuration error" if isinstance(exc, ValueError) else "refused"
    body = "\n".join(f"  {line}" for line in str(exc).splitlines())
    return (
        f"celery_kit: {kind} ({type(exc).__name__}), not started:\n{body}\n"
        f"  (exit status {EXIT_CONFIG}; {DEBUG_ENV}=1 or --traceback shows the traceback)"
    )


def _under_command_line() -> bool:
    # deferred: click is needed only once an error happened
    import click

    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.find_root().command.name in _COMMANDS


@contextmanager
def refusals() -> Iterator[None]:
    """Turn a kit error into the short block and ``SystemExit(2)`` on the command line.

    A worker's bootsteps run inside the ``celery worker`` command, so its start-up
    refusals are covered too; outside ``celery``/``celery-kit`` nothing changes.
    """
    try:
        yield
    except CeleryKitError as exc:
        if show_traceback() or _CALLER_REPORTS.get() or not _under_command_line():
            raise
        sys.stdout.flush()
        print(error_block(exc), file=sys.__stderr__ or sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG) from None
