"""Celery objects as the rules see them: tasks (duck-typed) and a kit app's configuration.

Nothing here imports Celery or the rest of the kit, so the kit's own start-up checks
(low in the package) and the doctor (high) build subjects the same way.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Mapping
from typing import Any

from celery_kit.config.celery_keys import CeleryKeys as K
from celery_kit.config.rules.facts import seconds
from celery_kit.config.rules.model import Subject, TaskInfo

__all__ = ["kit_subject", "task_info"]

#: Task attributes Celery 5.x warns about (celery/app/task.py, Task.bind): no effect in 6.0.
_ROUTING_ATTRIBUTES = (
    "queue",
    "exchange",
    "exchange_type",
    "routing_key",
    "delivery_mode",
    "priority",
)


def task_info(task: Any, *, read_source: bool = False) -> TaskInfo:
    """What the rules need from one registered task.

    Args:
        task: a registered Celery task.
        read_source: also parse the task function's source for ``self.retry()`` calls in
            a task that is not bound (the doctor does; worker start-up does not).
    """
    cls = type(task)
    # Task.bind copies task_default_priority onto the class: that one is not explicit
    conf = getattr(getattr(task, "app", None), "conf", None)
    app_priority = conf.get(K.task_default_priority) if conf is not None else None
    explicit = {
        name: getattr(task, name)
        for name in _ROUTING_ATTRIBUTES
        if name in cls.__dict__
        and getattr(task, name, None) is not None
        and not (name == "priority" and getattr(task, name) == app_priority)
    }
    autoretry = tuple(_class_name(c) for c in getattr(task, "autoretry_for", ()) or ())
    retry_kwargs = getattr(task, "retry_kwargs", None) or {}
    max_retries = getattr(task, "max_retries", 3)
    return TaskInfo(
        name=str(task.name),
        acks_late=bool(task.acks_late),
        reject_on_worker_lost=task.reject_on_worker_lost,
        time_limit=seconds(task.time_limit),
        soft_time_limit=seconds(task.soft_time_limit),
        ignore_result=bool(task.ignore_result),
        max_retries=None if max_retries is None else int(max_retries),
        autoretry_for=autoretry,
        retry_backoff=bool(getattr(task, "retry_backoff", False)),
        retry_backoff_max=float(getattr(task, "retry_backoff_max", 600) or 600),
        default_retry_delay=float(getattr(task, "default_retry_delay", 180) or 0),
        retry_kwargs=dict(retry_kwargs) if isinstance(retry_kwargs, Mapping) else {},
        routing_attributes=explicit,
        location=f"{cls.__module__}.{getattr(task, '__qualname__', task.name)}",
        unbound_retry=_unbound_retry(cls) if read_source else None,
        source=_source_of(cls) if read_source else None,
    )


def _source_of(cls: type) -> tuple[str, int] | None:
    """Where the task's function is defined."""
    run = cls.__dict__.get("run")
    fun = getattr(run, "__func__", run)
    code = getattr(fun, "__code__", None)
    if fun is None or code is None:
        return None
    try:
        path = inspect.getsourcefile(fun)
    except TypeError:
        return None
    return (path, int(code.co_firstlineno)) if path else None


def _unbound_retry(cls: type) -> bool | None:
    """``self.retry(...)`` in the body of a task that is not bound (``bind=False``).

    Celery stores an unbound task's function as ``staticmethod(fun)`` (celery/app/base.py,
    ``_task_from_fun``), so its first parameter is the caller's first argument, not the
    task. ``None`` when the source cannot be read.
    """
    run = cls.__dict__.get("run")
    if not isinstance(run, staticmethod):
        return False
    fun = run.__func__
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fun)))
    except (OSError, TypeError, SyntaxError):
        return None
    code = getattr(fun, "__code__", None)
    params = code.co_varnames[: code.co_argcount] if code is not None else ()
    if not params:
        return False
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "retry"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == params[0]
        for node in ast.walk(tree)
    )


def _class_name(cls: Any) -> str:
    module = getattr(cls, "__module__", "")
    name = getattr(cls, "__qualname__", repr(cls))
    return name if module == "builtins" else f"{module}.{name}"


def kit_subject(
    entries: Mapping[str, Any],
    *,
    max_prefetch: int,
    extra_unacked_s: float,
    consumer_timeout: tuple[float, str] | None,
    tasks: tuple[TaskInfo, ...] | None = None,
    unsafe_content: frozenset[str] | None = None,
) -> Subject:
    """The subject of a kit configuration: ``entries`` are ``build_conf`` entries.

    Args:
        entries: Celery key -> entry with ``value``, ``source`` and ``origin``.
        max_prefetch: the largest prefetch of any worker profile.
        extra_unacked_s: longest allowed countdown/retry delay plus the margin.
        consumer_timeout: RabbitMQ's ``(seconds, origin)`` when the broker is AMQP.
        tasks: the registered tasks, if known.
        unsafe_content: content types the kit refuses (default: the rules' own list).
    """
    conf = {key: entry.value for key, entry in entries.items()}
    origins = {key: f"`{entry.source}` ({entry.origin})" for key, entry in entries.items()}
    if consumer_timeout is not None:
        conf["consumer_timeout"], origins["consumer_timeout"] = consumer_timeout
    return Subject(
        conf=conf,
        origins=origins,
        tasks=tasks,
        kit=True,
        max_prefetch=max_prefetch,
        extra_unacked_s=extra_unacked_s,
        unsafe_content=unsafe_content,
    )
