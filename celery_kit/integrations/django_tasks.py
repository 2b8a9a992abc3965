"""Django Tasks (Django >= 6.0) backend: ``django.tasks`` tasks run by ordinary kit workers.

Configure it in Django's ``TASKS`` setting (docs/integrations.md, "Django Tasks")::

    TASKS = {"default": {"BACKEND": "celery_kit.integrations.django_tasks.CeleryKitBackend",
                         "OPTIONS": {"APP": "proj.celery:app"}}}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cached_property, partial
from traceback import format_exception
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from celery.utils.imports import symbol_by_name
from django.db import transaction
from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from celery_kit.exceptions import ConfigError, CountdownTooLongError
from celery_kit.integrations.django_tasks_support import (
    Envelope,
    EnvelopeStore,
    django_status,
    envelope_times,
    kit_priority,
    parse_time,
    register_runner,
)
from celery_kit.state import settings_of
from celery_kit.topology.publish import check_delay

if TYPE_CHECKING:
    from celery import Celery
    from celery import Task as CeleryTask

__all__ = ["CeleryKitBackend", "KitDjangoTask"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class KitDjangoTask(Task):  # type: ignore[misc]
    """Django's ``Task`` plus ``kit_options``: kit/Celery task options for this task.

    Django >= 6.1 passes extra ``@task(...)`` keywords to the backend's task class, so
    ``@task(kit_options={"lock": "report:{report_id}"})`` works there; on 6.0 use the
    backend's ``OPTIONS["TASK_OPTIONS"]`` (same options, keyed by the task's module path).
    """

    kit_options: Mapping[str, Any] | None = dataclasses.field(
        default=None, compare=False, hash=False
    )


class CeleryKitBackend(BaseTaskBackend):  # type: ignore[misc]
    """Enqueue through a kit app; a kit worker runs the task; results from its backend.

    OPTIONS: ``APP`` (required: ``"proj.celery:app"``, a ``make_app`` app),
    ``ON_COMMIT`` (default ``True``: enqueue inside a transaction publishes after commit),
    ``DATABASE`` (the connection whose commit is awaited, default ``"default"``),
    ``TASK_OPTIONS`` (``{"module.path": {kit options}}``).
    """

    task_class = KitDjangoTask
    #: run_after becomes the message's ETA, checked against ``tasks.max_countdown_s``.
    supports_defer = True
    #: Coroutine functions run in the worker through ``asgiref``'s ``async_to_sync``.
    supports_async_task = True
    #: Django's -100…100 maps onto the kit's 0…9 (``PRIORITY_TABLE``).
    supports_priority = True

    def __init__(self, alias: str, params: Mapping[str, Any]) -> None:
        super().__init__(alias, params)
        path = self.options.get("APP")
        if not path:
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]: set OPTIONS['APP'] to the kit app, e.g. 'proj.celery:app'"
            )
        try:
            self.app: Celery = symbol_by_name(path)
        except (ImportError, AttributeError, ValueError) as exc:
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]: OPTIONS['APP'] = {path!r} cannot be imported ({exc})"
            ) from exc
        try:
            self.settings = settings_of(self.app)
        except ConfigError as exc:
            raise InvalidTaskBackend(f"TASKS[{alias!r}]: {exc}") from exc
        declared = set(self.settings.queues) | {self.settings.tasks.default_queue}
        unknown = sorted(set(params.get("QUEUES", [])) - declared)
        if unknown:
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]: QUEUES {unknown} are not declared in the kit's [queues]"
                f" ({', '.join(sorted(declared))}); declare them there or drop them here"
            )
        self.queues = set(params.get("QUEUES") or declared)
        self._on_commit = bool(self.options.get("ON_COMMIT", True))
        self._database = str(self.options.get("DATABASE", "default"))
        self._task_options: Mapping[str, Mapping[str, Any]] = self.options.get("TASK_OPTIONS", {})
        self._registered: set[str] = set()

    @cached_property
    def store(self) -> EnvelopeStore | None:
        """Where results' Django-side details live (``None``: no usable result backend)."""
        return EnvelopeStore.for_app(self.app)

    @property
    def supports_get_result(self) -> bool:
        """True only when the app has a key-value result backend (Redis by default)."""
        return self.store is not None

    # -- validation and registration ----------------------------------------------------

    def validate_task(self, task: Task) -> None:
        """Django's checks with the kit's messages; registers the task's Celery task."""
        if task.queue_name not in self.queues:
            raise InvalidTask(
                f"task {task.module_path!r}: queue_name {task.queue_name!r} is not declared in"
                f" the kit's [queues] ({', '.join(sorted(self.queues))}); declare it in"
                " [queues] or use one of those"
            )
        super().validate_task(task)
        if task.run_after is not None:
            self._check_defer(task)
        self._register(task)

    def _check_defer(self, task: Task) -> None:
        try:
            check_delay(
                task.module_path,
                countdown=None,
                eta=task.run_after,
                max_countdown_s=self.settings.tasks.max_countdown_s,
            )
        except CountdownTooLongError as exc:
            raise InvalidTask(f"run_after: {exc}") from exc

    def _register(self, task: Task) -> None:
        name = task.module_path
        if name in self._registered:
            return
        options = {**self._task_options.get(name, {}), **(getattr(task, "kit_options", None) or {})}
        register_runner(
            self.app,
            name=name,
            func=task.func,
            takes_context=task.takes_context,
            call=partial(self._call, task),
            store=lambda: self.store,
            options=options,
        )
        self._registered.add(name)

    # -- producer side ------------------------------------------------------------------

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Publish through the kit app (after commit when inside a transaction)."""
        self.validate_task(task)
        celery_task: CeleryTask[Any, Any] = self.app.tasks[task.module_path]
        if celery_task.typing:  # arguments that do not fit fail here, not after the commit
            celery_task.__header__(*args, **kwargs)  # type: ignore[attr-defined]
        task_id = str(uuid4())
        result = self._result(task, task_id, list(args), dict(kwargs), TaskResultStatus.READY)
        envelope: Envelope = {
            "path": task.module_path,
            "args": result.args,
            "kwargs": result.kwargs,
            "queue_name": task.queue_name,
            "priority": task.priority,
            "run_after": None if task.run_after is None else task.run_after.isoformat(),
            "backend": self.alias,
        }
        send = partial(self._send, task, task_id, result, envelope)
        if self._on_commit:
            transaction.on_commit(send, using=self._database)
        else:
            send()
        return result

    def _send(self, task: Task, task_id: str, result: TaskResult, envelope: Envelope) -> None:
        now = timezone.now()
        object.__setattr__(result, "enqueued_at", now)
        if self.store is not None:
            self.store.save(task_id, {**envelope, "enqueued_at": now.isoformat()})
        celery_task: CeleryTask[Any, Any] = self.app.tasks[task.module_path]
        celery_task.apply_async(
            result.args,
            result.kwargs,
            task_id=task_id,
            queue=task.queue_name,
            priority=kit_priority(task.priority),
            eta=task.run_after,
        )
        task_enqueued.send(type(self), task_result=result)

    def _result(
        self,
        task: Task,
        task_id: str,
        args: list[Any],
        kwargs: dict[str, Any],
        status: TaskResultStatus,
        **times: Any,
    ) -> TaskResult:
        fields: dict[str, Any] = {
            "enqueued_at": None,
            "started_at": None,
            "last_attempted_at": None,
            "finished_at": None,
            "errors": [],
            "worker_ids": [],
        }
        fields.update(times)
        return TaskResult(
            task=task, id=task_id, status=status, args=args, kwargs=kwargs, backend=self.alias,
            **fields,
        )  # fmt: skip

    # -- worker side --------------------------------------------------------------------

    def _call(
        self,
        task: Task,
        celery_task: CeleryTask[Any, Any],
        envelope: Envelope | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if not task.takes_context:
            return normalize_json(task.call(*args, **kwargs))
        request = celery_task.request
        times = envelope_times(envelope or {"worker_ids": [str(request.hostname)]})
        running = self._result(
            task, str(request.id), list(args), dict(kwargs), TaskResultStatus.RUNNING, **times
        )
        return normalize_json(task.call(TaskContext(task_result=running), *args, **kwargs))

    # -- results ------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult:
        """The task's result, its status mapped from Celery's state.

        Raises:
            ResultBackendMissingError: the app has no key-value result backend.
            TaskResultDoesNotExist: no task with this id was enqueued (or it expired).
        """
        store = EnvelopeStore.require(self.store, self.app)
        envelope = store.load(result_id)
        if envelope is None:
            raise TaskResultDoesNotExist(result_id)
        task: Task = import_string(envelope["path"])
        run_after = parse_time(envelope.get("run_after"))
        task = task.using(
            priority=envelope["priority"],
            queue_name=envelope["queue_name"],
            run_after=run_after,
            backend=self.alias,
        )
        meta = self.app.backend.get_task_meta(result_id)
        status = TaskResultStatus(django_status(str(meta.get("status"))))
        errors = []
        if status == TaskResultStatus.FAILED and isinstance(meta.get("result"), BaseException):
            exc = meta["result"]
            kind = type(exc)
            errors.append(
                TaskError(
                    exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                    traceback=meta.get("traceback") or "".join(format_exception(exc)),
                )
            )
        finished = parse_time(meta.get("date_done")) if result_finished(status) else None
        result = self._result(
            task, result_id, envelope["args"], envelope["kwargs"], status,
            finished_at=finished, errors=errors, **envelope_times(envelope),
        )  # fmt: skip
        if status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", meta.get("result"))
        return result


def result_finished(status: TaskResultStatus) -> bool:
    """True for the statuses Django treats as finished."""
    return status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
