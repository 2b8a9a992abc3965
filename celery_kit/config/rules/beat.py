"""Rules on ``beat_schedule``: every periodic entry names a task some module registers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from celery_kit.config.celery_keys import CeleryKeys as K
from celery_kit.config.rules.facts import ev
from celery_kit.config.rules.model import Hit, Rule, Scope, Severity, Subject

__all__ = ["BEAT_RULES"]


def _unregistered_beat_task(subject: Subject) -> Iterator[Hit]:
    schedule = subject.get(K.beat_schedule) or {}
    if subject.tasks is None or not isinstance(schedule, Mapping):
        return
    registered = {task.name for task in subject.tasks}
    for name, entry in sorted(schedule.items()):
        task = _entry_task(entry)
        if not isinstance(task, str) or task in registered or task.startswith("celery."):
            continue  # celery.* built-ins (backend_cleanup) are not in the task list
        where = f"[beat.schedule.{name}]" if subject.kit else f"beat_schedule[{name!r}]"
        yield (
            f"{where}: task {task!r} is not registered by any task module this app imports;"
            " beat would send it every time and every worker would reject it. Fix the name,"
            " or import the module that defines it (Celery's include/imports, or"
            " app.autodiscover_tasks())",
            (ev(subject, K.beat_schedule),),
            task,
        )


def _entry_task(entry: Any) -> Any:
    return entry.get("task") if isinstance(entry, Mapping) else getattr(entry, "task", None)


BEAT_RULES: tuple[Rule, ...] = (
    Rule(
        "beat-task-not-registered",
        Severity.ERROR,
        "a periodic entry names a task no module registers",
        "Beat sends by name; a typo or a task module nobody imports is sent on every tick"
        " and rejected by every worker as unregistered, so the periodic work never runs.",
        "https://docs.celeryq.dev/en/stable/userguide/periodic-tasks.html#entries",
        "correct the entry's `task`, or add the module to `include`/`imports`",
        "correct `task` in [beat.schedule.NAME], or import the task module",
        Scope.TASKS,
        _unregistered_beat_task,
    ),
)
