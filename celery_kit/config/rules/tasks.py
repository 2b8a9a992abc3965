"""Rules on what tasks declare about retries."""

from __future__ import annotations

from collections.abc import Iterator

from celery_kit.config.rules.facts import task_ev
from celery_kit.config.rules.model import Hit, Rule, Scope, Severity, Subject

__all__ = ["TASK_RULES"]

_BROAD = frozenset({"Exception", "BaseException", "builtins.Exception", "builtins.BaseException"})


def _uncapped_autoretry(subject: Subject) -> Iterator[Hit]:
    for task in subject.tasks or ():
        broad = _BROAD.intersection(task.autoretry_for)
        cap = task.retry_kwargs.get("max_retries", task.max_retries)
        if broad and cap is None:
            yield (
                f"task {task.name!r} retries on {sorted(broad)[0]} with no max_retries: a"
                " permanent error (a bug, bad input) retries forever",
                (
                    task_ev(task, "autoretry_for", task.autoretry_for),
                    task_ev(task, "max_retries", cap),
                ),
                task.name,
            )
        elif broad and not task.retry_backoff:
            yield (
                f"task {task.name!r} retries on {sorted(broad)[0]} at a fixed"
                f" {task.default_retry_delay:g} s without backoff: an outage becomes a"
                " synchronised retry storm",
                (task_ev(task, "autoretry_for", task.autoretry_for),),
                task.name,
            )


def _retry_without_bind(subject: Subject) -> Iterator[Hit]:
    for task in subject.tasks or ():
        if task.unbound_retry:
            yield (
                f"task {task.name!r} calls self.retry() but is not bound: `self` is its first"
                " argument, so the first retry raises AttributeError and the task fails"
                " instead of retrying",
                (task_ev(task, "bind", False),),
                task.name,
            )


TASK_RULES: tuple[Rule, ...] = (
    Rule(
        "retry-without-bind",
        Severity.ERROR,
        "self.retry() in a task that is not bound",
        "Only bind=True passes the task as the first argument; without it `self` is"
        " whatever the caller passed first, so the retry meant to save the task crashes it.",
        "https://docs.celeryq.dev/en/stable/userguide/tasks.html#bound-tasks",
        "@app.task(bind=True) on tasks that call self.retry()",
        "the same (or base=RetryingTask with autoretry_for, no self.retry() needed)",
        Scope.TASKS,
        _retry_without_bind,
    ),
    Rule(
        "broad-autoretry",
        Severity.WARNING,
        "autoretry_for=(Exception,) without a cap or backoff",
        "Retrying every exception also retries bugs and bad input; with max_retries=None"
        " that never stops, and without retry_backoff every failing task retries in step.",
        "https://docs.celeryq.dev/en/stable/userguide/tasks.html#automatic-retry-for-known-exceptions",
        "autoretry_for the transient errors only, retry_backoff=True, max_retries=N",
        "base=RetryingTask (backoff, jitter, a cap and the DLQ when exhausted)",
        Scope.TASKS,
        _uncapped_autoretry,
    ),
)
