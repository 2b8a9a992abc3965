"""Task base classes: ``KitTask`` (kit task options) and ``RetryingTask`` (backoff + DLQ).

``make_app`` installs ``KitTask`` as the app's task class, so kit options work on a plain
``@app.task``. Both are ordinary ``celery.Task`` subclasses with class-attribute policy
and no ``__init__``: mix them with other task classes (``class T(KitTask, DjangoTask)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from celery import Task, bootsteps

from celery_kit import task_options
from celery_kit.task_options import Plan

if TYPE_CHECKING:
    from collections.abc import Callable

    from celery import Celery
    from celery.result import AsyncResult

    from celery_kit.config import Settings
    from celery_kit.locks import OnBusy

__all__ = [
    "KitTask",
    "PermanentError",
    "PermanentHTTPError",
    "RetryingTask",
    "TransientError",
    "TransientHTTPError",
    "check_redis_options",
    "http_error",
    "install_tasks",
    "is_transient_status",
    "kit_task_class",
]

#: HTTP statuses worth retrying: timeouts, throttling, and server-side trouble.
TRANSIENT_HTTP_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})


class PermanentError(Exception):
    """Raise from a task to say "retrying cannot help": it is dead-lettered at once."""


class TransientError(Exception):
    """Raise from a task to ask for a retry, optionally not before ``retry_after_s``.

    ``RetryingTask`` honours ``retry_after_s`` (e.g. an HTTP ``Retry-After``) as the
    lower bound of the next delay, within the backoff cap.
    """

    def __init__(self, message: str = "", *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentHTTPError(PermanentError):
    """An HTTP status retrying cannot fix (most 4xx)."""

    def __init__(self, message: str = "", *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class TransientHTTPError(TransientError):
    """An HTTP status worth retrying (408, 425, 429, 5xx gateway/availability)."""

    def __init__(
        self, message: str = "", *, status: int = 0, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.status = status


def is_transient_status(status: int) -> bool:
    """True for HTTP statuses worth retrying (see ``TRANSIENT_HTTP_STATUSES``)."""
    return status in TRANSIENT_HTTP_STATUSES


def http_error(
    status: int, message: str = "", *, retry_after_s: float | None = None
) -> PermanentHTTPError | TransientHTTPError | None:
    """The exception to raise for an HTTP response status, or ``None`` if it succeeded.

    Example::

        if (exc := http_error(resp.status_code, resp.text[:200],
                              retry_after_s=parse_retry_after(resp))) is not None:
            raise exc
    """
    if status < 400:
        return None
    text = f"HTTP {status}" + (f": {message}" if message else "")
    if is_transient_status(status):
        return TransientHTTPError(text, status=status, retry_after_s=retry_after_s)
    # other 4xx: the request itself is wrong; 501, 505, ...: the server will never do it
    return PermanentHTTPError(text, status=status)


class KitTask(Task[Any, Any]):
    """``celery.Task`` plus the kit task options (see ``task_options.KIT_OPTIONS``).

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
    Request = "celery_kit.poison:KitRequest"

    #: Built from the options when the class is created; ``None``: no kit behaviour.
    _kit_plan: ClassVar[Plan | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._kit_plan = task_options.build_plan(cls)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        plan = self._kit_plan
        if plan is None or self.request.called_directly:
            return super().__call__(*args, **kwargs)
        from celery_kit.guards import run_guarded

        return run_guarded(self, plan, args, kwargs, super().__call__)

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
        from celery_kit.guards import reserve_publish

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
        the retried message can take them) and remembering the first failure time."""
        from celery_kit.guards import before_retry

        before_retry(self, kwargs)
        return super().retry(*args, **kwargs)


class RetryingTask(KitTask):
    """Retries transient failures with capped exponential backoff and full jitter.

    Retry n (0-based) waits ``uniform(0, min(cap, base * 2**n))`` seconds ("full jitter",
    https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), where the
    cap is the smallest of ``backoff_max_s``, ``tasks.retry_backoff_max_s`` and
    ``tasks.max_countdown_s``, so a retry never outlives the broker's redelivery budget.
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
    from celery.utils.imports import symbol_by_name

    base = (
        symbol_by_name(current or "celery.app.task:Task")
        if not isinstance(current, type)
        else current
    )
    if base is Task or issubclass(base, KitTask):
        return KitTask if base is Task else base
    return type(f"Kit{base.__name__}", (KitTask, base), {"__module__": base.__module__})


def install_tasks(app: Celery, settings: Settings) -> None:
    """Make ``KitTask`` the app's task class; workers check Redis-backed options at start."""
    # Celery accepts a class here (its docs: "Union[str, Type[Task]]"); the stubs say str.
    app.task_cls = kit_task_class(app.task_cls)  # type: ignore[assignment]
    app.steps["worker"].add(RedisChecks)


def check_redis_options(app: Celery) -> None:
    """A task with a Redis-backed kit option needs a Redis.

    Raises:
        ConfigError: such a task exists but no Redis is configured (names the setting).
    """
    from celery_kit.app import settings_of
    from celery_kit.redis_client import redis_url

    app.finalize(auto=True)
    if any(getattr(type(t), "_kit_plan", None) is not None for t in app.tasks.values()):
        redis_url(settings_of(app))


class RedisChecks(bootsteps.Step):
    """Worker bootstep: refuse to start when kit options have no Redis to use (an
    exception here aborts start-up; a signal receiver's would be swallowed)."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        check_redis_options(parent.app)
        super().__init__(parent, **kwargs)
