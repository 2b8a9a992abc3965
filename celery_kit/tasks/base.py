"""Task base classes: ``KitTask`` (kit task options) and ``RetryingTask`` (backoff + DLQ).

``make_app`` installs ``KitTask`` as the app's task class, so kit options work on a plain
``@app.task``. Both are ordinary ``celery.Task`` subclasses with class-attribute policy
and no ``__init__``: mix them with other task classes (``class T(KitTask, DjangoTask)``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar

from celery import Task
from celery.utils.imports import symbol_by_name

from celery_kit.console import refusals
from celery_kit.state import find_state
from celery_kit.tasks import guards, options
from celery_kit.tasks.dedupe import reserve_publish
from celery_kit.tasks.errors import PermanentError
from celery_kit.tasks.options import Plan
from celery_kit.tasks.overlap import run_exclusive, wants_guard
from celery_kit.topology.delays import delay_route
from celery_kit.topology.priority import show_kit_priority
from celery_kit.topology.publish import check_delay

if TYPE_CHECKING:
    from collections.abc import Callable

    from celery import Celery
    from celery.result import AsyncResult

    from celery_kit.config.settings import Settings
    from celery_kit.coordination.locks import OnBusy
    from celery_kit.state import RunCounter

__all__ = ["KitTask", "RetryingTask", "install_tasks", "kit_task_class"]


class KitTask(Task[Any, Any]):
    """``celery.Task`` plus the kit task options (see ``tasks.options.KIT_OPTIONS``).

    A task without kit options runs exactly as under Celery (one extra attribute check).
    The options only apply when a worker (or ``apply()``) runs the task, not when the
    function is called directly.
    """

    #: Store-once key: duplicates return the stored result without running the body.
    idempotency_key: ClassVar[str | Callable[..., Any] | None] = None
    #: Claim lease (``None``: ``idempotency.lease_s``); renewed while the body runs.
    idempotency_lease_s: ClassVar[float | None] = None
    #: How long the result is kept (``None``: ``idempotency.result_ttl_s``).
    idempotency_ttl_s: ClassVar[float | None] = None
    #: Opt-in (like arq's ``_job_id``): publishing a key that is already pending or running
    #: returns that task instead of queuing another (one more round trip per publish).
    dedupe_enqueue: ClassVar[bool] = False
    #: Lock name template; only one run per name at a time.
    lock: ClassVar[str | Callable[..., Any] | None] = None
    #: Lock lease (``None``: ``locks.ttl_s``); renewed while the body runs.
    lock_ttl_s: ClassVar[float | None] = None
    #: What to do when the lock is taken: "skip", "retry" (default) or "fail".
    lock_on_busy: ClassVar[OnBusy | str | None] = None
    #: Global rate over every worker, e.g. "100/m" (Celery's ``rate_limit`` is per worker).
    rate: ClassVar[str | None] = None
    #: Bucket name template (default: the task name).
    rate_key: ClassVar[str | Callable[..., Any] | None] = None
    #: Bucket size (default: the rate's count).
    rate_burst: ClassVar[float | None] = None
    #: Failures go to the dead-letter store.
    dead_letter: ClassVar[bool] = False
    #: Exceptions retried with backoff; empty: no kit retry policy.
    retry_for: ClassVar[tuple[type[BaseException], ...]] = ()
    #: Exceptions never retried (dead-lettered when ``dead_letter``).
    permanent_for: ClassVar[tuple[type[BaseException], ...]] = (PermanentError,)
    #: Backoff base (``None``: ``retry.backoff_base_s``).
    backoff_base_s: ClassVar[float | None] = None
    #: Backoff cap (``None``: ``tasks.retry_backoff_max_s``; never above it).
    backoff_max_s: ClassVar[float | None] = None

    #: Main-process request class: caps worker-lost redeliveries (poison messages).
    Request = "celery_kit.tasks.poison:KitRequest"

    #: Built from the options when the class is created; ``None``: no kit behaviour.
    _kit_plan: ClassVar[Plan | None] = None
    #: Runs are counted through ``KitState.run_counter`` (``state.COUNTS_OWN_RUNS``), so
    #: the metrics need no ``task_prerun``/``task_success`` receiver for this task.
    _kit_counts_own_runs: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        with refusals():  # under `celery -A proj …`: a short block and exit 2
            cls._kit_plan = options.build_plan(cls)
        if not getattr(cls.on_success, "_kit_counts_success", False):
            # an on_success that does not call super() would skip the count
            cls.on_success = _counting_success(cls.on_success)  # type: ignore[method-assign]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if not request.called_directly:  # where Celery would send task_prerun
            counter = self._kit_run_counter()
            if counter is not None:
                request.__dict__["_kit_run"] = counter.started(self, request)
        if request.headers and not request.called_directly and wants_guard(request.headers):
            # beat sent it for an entry with overlap = "skip"
            return run_exclusive(self, self._call_planned, args, kwargs)
        return self._call_planned(*args, **kwargs)

    def _call_planned(self, *args: Any, **kwargs: Any) -> Any:
        plan, request = self._kit_plan, self.request
        info = request.delivery_info
        if info and not request.called_directly:
            if info.get("priority") is not None and not info.get("is_eager"):
                # the kit value, not the broker's (a retry re-publishes it); done here
                # instead of in a task_prerun receiver, so Celery sends no signal
                show_kit_priority(self.app, request, info)
            if info.get("redelivered"):
                from celery_kit.tasks.poison import mark_running

                mark_running(self)  # a whole-worker death while running is then counted
        if plan is None or request.called_directly:
            return super().__call__(*args, **kwargs)
        return guards.run_guarded(self, plan, args, kwargs, super().__call__)

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        """Count the success (metrics): Celery's tracer calls this after storing the
        result, where it sends ``task_success``; then the next class's ``on_success``."""
        _count_success(self)
        super().on_success(retval, task_id, args, kwargs)

    on_success._kit_counts_success = True  # type: ignore[attr-defined]

    def _kit_run_counter(self) -> RunCounter | None:
        try:
            found: RunCounter | None = self.__dict__["_kit_counter"]
        except KeyError:  # first run in this process: the app's counter, if metrics are on
            state = find_state(self.app)
            found = self.__dict__["_kit_counter"] = state.run_counter if state else None
        return found

    def apply_async(
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: str | None = None,
        *rest: Any,
        **options: Any,
    ) -> AsyncResult[Any]:
        """Celery's ``apply_async``; with an idempotency key, a publish of a key that is
        already pending or running returns that task's result handle instead (one round
        trip; skipped under ``task_always_eager``)."""
        plan = self._kit_plan
        if plan is None or plan.idempotency is None or not plan.dedupe_enqueue:
            return super().apply_async(args, kwargs, task_id, *rest, **options)
        task_id, existing, undo = reserve_publish(self, plan, args, kwargs, task_id)
        if existing is not None:
            return self.AsyncResult(existing)
        try:
            return super().apply_async(args, kwargs, task_id, *rest, **options)
        except BaseException:
            undo()
            raise

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's ``retry``, after releasing this run's idempotency claim and lock (so
        the retried message can take them) and remembering the first failure time.

        Raises:
            CountdownTooLongError: the retry's countdown/ETA exceeds
                ``tasks.max_countdown_s`` (``delays.max_delay_s`` where the delay set takes
                long delays); raised here, in the task body, where it can be
                caught (Celery would wrap a refusal of the retry message in ``Reject``).
        """
        if not self.request.called_directly:
            self._check_retry_delay(args, kwargs)
        guards.before_retry(self, kwargs)
        return super().retry(*args, **kwargs)

    def _check_retry_delay(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        # retry(args, kwargs, exc, throw, eta, countdown, ...): Celery's positional order
        eta = kwargs.get("eta", args[4] if len(args) > 4 else None)
        countdown = kwargs.get("countdown", args[5] if len(args) > 5 else None)
        if not eta and countdown is None:
            countdown = self.default_retry_delay  # what Celery's retry falls back to
        route = delay_route(self.app)  # max_countdown_s, or max_delay_s with the delay set
        check_delay(
            self.name,
            countdown=countdown,
            eta=eta,
            max_countdown_s=route.max_delay_s,
            setting=route.bound_setting,
        )


def _count_success(task: KitTask) -> None:
    token = task.request.__dict__.pop("_kit_run", None)  # once per run, however many calls
    counter = task._kit_run_counter() if token is not None else None
    if counter is not None:
        counter.succeeded(task, token)


def _counting_success(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` (an ``on_success`` of a ``KitTask`` subclass), counting the success first."""

    @functools.wraps(method)
    def on_success(self: KitTask, *args: Any, **kwargs: Any) -> Any:
        _count_success(self)
        return method(self, *args, **kwargs)

    on_success._kit_counts_success = True  # type: ignore[attr-defined]
    return on_success


class RetryingTask(KitTask):
    """Retries transient failures with capped exponential backoff and full jitter.

    Retry n (0-based) waits ``uniform(0, min(cap, base * 2**n))`` seconds ("full jitter",
    https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), where the
    cap is the smallest of ``backoff_max_s``, ``tasks.retry_backoff_max_s`` and (unless the
    delay set takes long delays) ``tasks.max_countdown_s``, so a retry never outlives the
    broker's redelivery budget.
    A ``TransientError(retry_after_s=...)`` raises the lower bound (within the cap).
    ``permanent_for`` exceptions, anything not in ``retry_for``, and the failure after
    ``max_retries`` retries go to the dead-letter store. All policy is immutable class
    attributes; nothing is shared or mutated between tasks.
    """

    #: Everything is transient unless listed in ``permanent_for``.
    retry_for: ClassVar[tuple[type[BaseException], ...]] = (Exception,)
    dead_letter: ClassVar[bool] = True
    #: Retries after the first attempt; ``None``: ``retry.max_retries`` from settings.
    max_retries: int | None = None


def kit_task_class(current: str | type[Task[Any, Any]] | None) -> type[Task[Any, Any]]:
    """``KitTask``, or ``KitTask`` mixed in front of a non-default task class."""
    base = (
        symbol_by_name(current or "celery.app.task:Task")
        if not isinstance(current, type)
        else current
    )
    if base is Task or issubclass(base, KitTask):
        return KitTask if base is Task else base
    return type(f"Kit{base.__name__}", (KitTask, base), {"__module__": base.__module__})


def install_tasks(app: Celery, settings: Settings) -> None:
    """Make ``KitTask`` the app's task class and validate every task message before Celery
    sees it (``consumer_guard``); the start-up checks run in ``StartupChecks``."""
    # Celery accepts a class here (its docs: "Union[str, Type[Task]]"); the stubs say str.
    app.task_cls = kit_task_class(app.task_cls)  # type: ignore[assignment]
    from celery_kit.tasks.consumer_guard import EnvelopeGuard

    app.steps["consumer"].add(EnvelopeGuard)
