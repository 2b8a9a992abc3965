"""``[beat.schedule]`` entries whose task no module registers, as a plain function.

The check itself is the rule ``beat-task-not-registered`` (``celery_kit.config.rules.beat``):
a worker refuses to start on it (``tasks.checks.STARTUP_REFUSALS``), ``kit check`` and
``celery-kit doctor`` report it, and ``kit beat`` refuses to start through this function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery_kit.config.rules import evaluate
from celery_kit.config.rules.celery_view import task_info
from celery_kit.state import settings_of
from celery_kit.tasks.checks import kit_subject_of

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["RULE", "unregistered_entries"]

#: The rule's id (``--ignore`` it in ``kit check`` / ``doctor`` like any other).
RULE = "beat-task-not-registered"


def unregistered_entries(app: Celery) -> list[str]:
    """One message per ``[beat.schedule.NAME]`` whose task no imported module registers.

    Imports the app's task modules first (``include``/``imports``/autodiscovery), as a
    worker does, unless a worker already did.
    """
    settings = settings_of(app)
    if not settings.beat.schedule:
        return []
    if not getattr(app.loader, "worker_initialized", False):
        app.loader.import_default_modules()
    app.finalize(auto=True)
    tasks = tuple(task_info(t) for n, t in sorted(app.tasks.items()) if not n.startswith("celery."))
    return [f.message for f in evaluate(kit_subject_of(settings, tasks=tasks), only=(RULE,))]
