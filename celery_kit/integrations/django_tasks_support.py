"""Pieces of the Django Tasks backend: priority table, status map, result envelope, runner.

Nothing here imports Django at module level; :mod:`celery_kit.integrations.django_tasks`
does, and passes Django's types in.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery import states

from celery_kit.exceptions import ResultBackendMissingError

if TYPE_CHECKING:
    from celery import Celery, Task
    from celery.backends.base import BaseKeyValueStoreBackend

__all__ = [
    "PRIORITY_TABLE",
    "Envelope",
    "EnvelopeStore",
    "django_status",
    "envelope_times",
    "kit_priority",
    "register_runner",
]

#: Django priority (-100…100, higher is more urgent) → kit ``Priority`` (0…9, higher is
#: more urgent). A Django priority maps to the first row whose lower bound it reaches.
#: Django's default 0 lands on ``NORMAL`` (5), the kit's default; the kit has four levels
#: above NORMAL and five below, so the bands are 25 wide above and 20 wide below.
PRIORITY_TABLE: tuple[tuple[int, int], ...] = (
    (88, 9),  # HIGHEST
    (63, 8),
    (38, 7),  # HIGH
    (13, 6),
    (-10, 5),  # NORMAL (Django's default 0)
    (-30, 4),
    (-50, 3),  # LOW
    (-70, 2),
    (-90, 1),
    (-100, 0),  # LOWEST
)

#: Celery state → Django ``TaskResultStatus`` value. RETRY is "ready to be executed
#: again" in Django's words; PROGRESS is the kit's running-with-progress state.
_STATUS: Mapping[str, str] = {
    states.PENDING: "READY",
    states.RECEIVED: "READY",
    states.RETRY: "READY",
    states.STARTED: "RUNNING",
    "PROGRESS": "RUNNING",
    states.SUCCESS: "SUCCESSFUL",
    states.FAILURE: "FAILED",
    states.REVOKED: "FAILED",
    states.REJECTED: "FAILED",
}


def kit_priority(django_priority: int) -> int:
    """The kit priority for a Django priority (see :data:`PRIORITY_TABLE`)."""
    for bound, level in PRIORITY_TABLE:
        if django_priority >= bound:
            return level
    return PRIORITY_TABLE[-1][1]


def django_status(celery_state: str) -> str:
    """Django's status name for a Celery state (unknown custom states count as running)."""
    return _STATUS.get(celery_state, "RUNNING")


Envelope = dict[str, Any]


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def parse_time(value: object) -> datetime | None:
    """A stored time (ISO string or datetime) as an aware datetime, or ``None``."""
    if value is None:
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def envelope_times(envelope: Envelope) -> dict[str, Any]:
    """``TaskResult`` fields kept in an envelope: times and one worker id per attempt."""
    return {
        "enqueued_at": parse_time(envelope.get("enqueued_at")),
        "started_at": parse_time(envelope.get("started_at")),
        "last_attempted_at": parse_time(envelope.get("last_attempted_at")),
        "worker_ids": list(envelope.get("worker_ids", [])),
    }


class EnvelopeStore:
    """What Django's ``TaskResult`` needs beyond Celery's result: kept next to the result.

    One JSON value per task id in the app's result backend (same expiry as results):
    the task path, arguments, queue, priority, enqueue time and one entry per attempt.
    Celery's own result record holds state, return value, error and finish time.
    """

    #: Key prefix, beside Celery's ``celery-task-meta-``.
    PREFIX = "celery-kit-django-task-"

    def __init__(self, backend: BaseKeyValueStoreBackend) -> None:
        self.backend = backend

    @classmethod
    def for_app(cls, app: Celery) -> EnvelopeStore | None:
        """The store for ``app``'s result backend, ``None`` when it cannot keep one."""
        from celery.backends.base import BaseKeyValueStoreBackend

        if not app.conf.result_backend or app.conf.result_backend == "disabled":
            return None
        backend = app.backend
        return cls(backend) if isinstance(backend, BaseKeyValueStoreBackend) else None

    @staticmethod
    def require(store: EnvelopeStore | None, app: Celery) -> EnvelopeStore:
        """``store``, or a :class:`ResultBackendMissingError` saying what to configure."""
        if store is None:
            raise ResultBackendMissingError(
                f"the Celery app {app.main!r} has no key-value result backend"
                f" (result_backend={app.conf.result_backend!r}), so Django Tasks results"
                " cannot be read: set result_backend (e.g. redis://host:6379/1) in the kit's"
                " settings, or CELERY_RESULT_BACKEND in Django's settings"
            )
        return store

    def _key(self, task_id: str) -> str:
        return self.PREFIX + task_id

    def save(self, task_id: str, envelope: Envelope) -> None:
        """Write the envelope (before the message is published)."""
        self.backend.set(self._key(task_id), json.dumps(envelope))

    def load(self, task_id: str) -> Envelope | None:
        """The envelope, or ``None`` when no task with that id was enqueued (or it expired)."""
        raw = self.backend.get(self._key(task_id))
        if raw is None:
            return None
        loaded: Envelope = json.loads(raw)
        return loaded

    def attempt(self, task_id: str, worker_id: str) -> Envelope | None:
        """Record that ``worker_id`` starts an attempt now; the updated envelope."""
        envelope = self.load(task_id)
        if envelope is None:
            return None
        now = _now_iso()
        envelope.setdefault("started_at", now)
        envelope["last_attempted_at"] = now
        envelope.setdefault("worker_ids", []).append(worker_id)
        self.save(task_id, envelope)
        return envelope


def _run_signature(func: Callable[..., Any], takes_context: bool) -> inspect.Signature:
    """``func``'s signature as Celery callers pass arguments: ``self`` first, no context."""
    params = list(inspect.signature(func).parameters.values())
    if takes_context:
        params = params[1:]
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return inspect.Signature([this, *params])


def register_runner(
    app: Celery,
    *,
    name: str,
    func: Callable[..., Any],
    takes_context: bool,
    call: Callable[[Task[Any, Any], Envelope | None, tuple[Any, ...], dict[str, Any]], Any],
    store: Callable[[], EnvelopeStore | None],
    options: Mapping[str, Any],
) -> None:
    """Register the Celery task a worker runs for one Django task (name = its module path).

    Args:
        app: the kit app.
        name: the Django task's ``module_path``.
        func: the Django task's function (its signature becomes the Celery task's, so
            kit key templates such as ``"report:{report_id}"`` bind by name).
        takes_context: drop the leading ``context`` parameter from that signature.
        call: runs the body: ``call(celery_task, envelope, args, kwargs)``.
        store: the envelope store (``None``: results are off).
        options: kit/Celery task options (``lock``, ``idempotency_key``, ``retry_for``…).
    """

    def run(self: Task[Any, Any], *args: Any, **kwargs: Any) -> Any:
        envelope = None
        kept = store()
        if kept is not None and self.request.id:
            envelope = kept.attempt(self.request.id, str(self.request.hostname or "worker"))
        return call(self, envelope, args, kwargs)

    run.__signature__ = _run_signature(func, takes_context)  # type: ignore[attr-defined]
    run.__name__ = getattr(func, "__name__", "run")
    run.__qualname__ = getattr(func, "__qualname__", "run")
    run.__module__ = getattr(func, "__module__", __name__)
    run.__doc__ = func.__doc__
    app.task(name=name, bind=True, shared=False, **dict(options))(run)  # type: ignore[no-untyped-call]
