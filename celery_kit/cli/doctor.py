"""``doctor`` and ``check``: click commands (imports only click at load; work is lazy)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.config.rules.model import Finding, Rule

__all__ = ["check", "doctor"]

#: Exit codes: 0 nothing at or above --fail-on, 1 findings, 2 the app could not be loaded.
EXIT_FINDINGS, EXIT_LOAD = 1, 2
_LEVELS = ("error", "warning", "info", "never")


def _load(ctx: click.Context, given: str | None) -> tuple[Celery, str]:
    """The app and its reference; exit 2 with one line when it cannot be loaded."""
    from celery_kit.doctor.loader import AppLoadError, load_app

    obj = ctx.find_object(object)
    app = getattr(obj, "app", None)
    if app is not None and given is None:
        return app, str(getattr(app, "main", None) or "app")
    ref = given or (ctx.obj.get("app_name") if isinstance(ctx.obj, dict) else None)
    if not ref:
        click.echo(f"{ctx.info_name}: name the app: celery-kit {ctx.info_name} -A proj", err=True)
        sys.exit(EXIT_LOAD)
    try:
        return load_app(ref), ref
    except AppLoadError as exc:
        if ctx.info_name == "check" and len(exc.problems) > 1:  # check lists every problem
            click.echo(f"check: cannot load app {ref!r}: the configuration is refused:", err=True)
            for problem in exc.problems:
                click.echo(f"  - {_mask_text(problem)}", err=True)
        else:
            click.echo(f"{ctx.info_name}: {_mask_text(str(exc))}", err=True)
        sys.exit(EXIT_LOAD)
    except Exception as exc:  # a config error raised by make_app() while importing
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        click.echo(f"{ctx.info_name}: cannot load app {ref!r}: {_mask_text(first)}", err=True)
        sys.exit(EXIT_LOAD)


def _subject(ctx: click.Context, app: Celery, ref: str, *, tasks: bool) -> Any:
    """The rules' view of ``app``; exit 2 with one line when its task modules fail to import."""
    from celery_kit.console import caller_reports
    from celery_kit.doctor.subject import subject_of

    try:
        with caller_reports():  # a task the kit refuses is reported here, not as the block
            return subject_of(app, tasks=tasks)
    except Exception as exc:  # an import error, or a task the kit refuses at definition
        first = (str(exc).strip().splitlines() or [""])[0]
        click.echo(
            f"{ctx.info_name}: cannot import the task modules of {ref!r}:"
            f" {type(exc).__name__}: {_mask_text(first)}",
            err=True,
        )
        sys.exit(EXIT_LOAD)


def _mask(value: Any, *, key: str = "") -> Any:
    from celery_kit.cli.settings_cmds import mask

    return mask(value, key=key)


def _mask_text(text: str) -> str:
    """Mask URLs with credentials inside free text (messages)."""
    from celery_kit.doctor.report import mask_text

    return mask_text(text, _mask)


def _artifact(app: Celery) -> str:
    import inspect
    import os

    module = sys.modules.get(type(app).__module__ if app.main is None else str(app.main))
    path = inspect.getsourcefile(module) if module is not None else None
    return os.path.relpath(path) if path else str(app.main or "app")


def _task_sources(subject: Any) -> dict[str, tuple[str, int]]:
    """Task name -> (path relative to the working directory, line) for SARIF regions."""
    import os

    return {
        t.name: (os.path.relpath(t.source[0]), t.source[1])
        for t in subject.tasks or ()
        if t.source is not None
    }


def _all_rules() -> tuple[Rule, ...]:
    from celery_kit.config.rules import static_rules
    from celery_kit.doctor.live_rules import LIVE_RULES

    return static_rules() + LIVE_RULES


def _live(app: Celery, subject: Any, timeout_s: float) -> tuple[list[Finding], list[str]]:
    """Run the probes for the app's broker; the notes say what was assumed."""
    from celery_kit.config.rules.facts import late_acked, seconds

    url = str(app.conf.broker_url or "")
    if subject.uses_redis:
        from celery_kit.doctor.live_redis import check_redis

        return check_redis(url, timeout_s=timeout_s), []
    if subject.uses_amqp:
        from celery_kit.config.celery_keys import CeleryKeys as K
        from celery_kit.doctor.live_amqp import check_amqp

        limits = [seconds(subject.get(K.task_time_limit))]
        limits += [t.time_limit for t in subject.tasks or () if t.acks_late]
        known = [x for x in limits if x is not None]
        longest = max(known) * subject.prefetch if known and late_acked(subject) else None
        report = check_amqp(
            url, app.amqp.queues.values(), timeout_s=timeout_s, longest_late_ack_s=longest
        )
        return report.findings, report.notes
    return [], [f"--live: no checks for broker {subject.broker_scheme or 'unset'!r}"]


def _exit_code(findings: list[Finding], fail_on: str) -> int:
    if fail_on == "never":
        return 0
    threshold = ("info", "warning", "error").index(fail_on)
    return EXIT_FINDINGS if any(f.severity.rank >= threshold for f in findings) else 0


_APP_OPTION = click.option(
    "-A", "--app", "app_ref", help="The app: proj, proj.celery or proj.celery:app."
)


@click.command(name="doctor")
@_APP_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.option("--sarif", is_flag=True, help="SARIF 2.1.0 report (CI annotations).")
@click.option(
    "--fail-on",
    type=click.Choice(_LEVELS),
    default="error",
    show_default=True,
    help="Exit 1 when a finding of this severity or worse is found.",
)
@click.option("--live", is_flag=True, help="Also check the running broker (read-only).")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0.1, 60),
    default=3.0,
    show_default=True,
    help="Seconds for each live check.",
)
@click.option("--ignore", multiple=True, metavar="RULE", help="Skip a rule (repeatable).")
@click.option("--no-tasks", is_flag=True, help="Do not import task modules.")
@click.pass_context
def doctor(
    ctx: click.Context,
    app_ref: str | None,
    as_json: bool,
    sarif: bool,
    fail_on: str,
    live: bool,
    timeout_s: float,
    ignore: tuple[str, ...],
    no_tasks: bool,
) -> None:
    """Audit any Celery app: settings, tasks and (--live) the broker (docs/doctor.md)."""
    from celery_kit.config.rules import evaluate
    from celery_kit.doctor.report import as_json as render_json
    from celery_kit.doctor.report import as_table
    from celery_kit.doctor.sarif import as_sarif

    if as_json and sarif:
        raise click.UsageError("choose one of --json and --sarif")
    known = {r.id for r in _all_rules()}
    unknown = sorted(set(ignore) - known)
    if unknown:
        raise click.BadParameter(f"unknown rule {', '.join(unknown)}", param_hint="--ignore")
    app, ref = _load(ctx, app_ref)
    subject = _subject(ctx, app, ref, tasks=not no_tasks)
    notes: list[str] = [] if not no_tasks else ["task modules not imported (--no-tasks)"]
    live_findings: list[Finding] = []
    if live:
        live_findings, live_notes = _live(app, subject, timeout_s)
        notes += live_notes
    findings = evaluate(subject, ignore=ignore)
    findings += [f for f in live_findings if f.rule.id not in ignore]
    findings.sort(key=lambda f: -f.severity.rank)
    if sarif:
        out = as_sarif(
            findings,
            rules=_all_rules(),
            app=ref,
            artifact=_artifact(app),
            mask=_mask,
            task_sources=_task_sources(subject),
        )
    elif as_json:
        out = render_json(findings, app=ref, mask=_mask, notes=notes)
    else:
        out = as_table(findings, app=ref, mask=_mask, notes=notes)
    click.echo(out)
    sys.exit(_exit_code(findings, fail_on))


@click.command(name="check")
@_APP_OPTION
@click.pass_context
def check(ctx: click.Context, app_ref: str | None) -> None:
    """Import the task modules and run every rule and start-up refusal; exit 1 on any error."""
    from celery_kit.config.rules import evaluate
    from celery_kit.doctor.report import as_table

    app, ref = _load(ctx, app_ref)
    findings = evaluate(_subject(ctx, app, ref, tasks=True))
    findings += _kit_refusals(app)
    findings.sort(key=lambda f: -f.severity.rank)
    click.echo(as_table(findings, app=ref, mask=_mask, notes=[]))
    code = _exit_code(findings, "error")
    click.echo("check: FAILED" if code else "check: OK", err=True)
    sys.exit(code)


def _kit_refusals(app: Celery) -> list[Finding]:
    """The kit worker's other start-up refusals (TopologyChecks, RedisChecks) as findings.

    StartupChecks is not repeated here: its checks are rules the engine already ran.
    """
    from celery_kit.doctor.live_rules import KIT_STARTUP_REFUSAL
    from celery_kit.exceptions import ConfigError
    from celery_kit.state import settings_of
    from celery_kit.tasks.checks import check_redis_options
    from celery_kit.topology.routing import check_task_routing

    try:
        settings_of(app)
    except ConfigError:
        return []  # not a kit app: no kit bootsteps
    findings = []
    for check in (check_task_routing, check_redis_options):
        try:
            check(app)
        except ConfigError as exc:
            lines = str(exc).splitlines()
            problems = [line.strip().lstrip("- ") for line in lines[1:]] or lines
            findings += [KIT_STARTUP_REFUSAL.finding(_mask_text(p)) for p in problems]
    return findings
