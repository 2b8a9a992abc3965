"""Worker log records that carry their task: a filter on the handlers, optional JSON lines.

Celery configures the worker's logging in the main process before the pool forks
(``after_setup_logger``, ``after_setup_task_logger``); the kit adds :class:`TaskContextFilter`
to those handlers there, so every pool child inherits it. A filter on a *handler* sees
records from every logger that propagates to it (the app's own ``logging.getLogger``
loggers included), unlike a filter on a logger.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import signals
from celery._state import get_current_task

from celery_kit.exceptions import ConfigError

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.config.settings import Settings

__all__ = ["JSON_FORMAT", "TaskContextFilter", "install_task_logging", "json_formatter"]

#: Standard record fields of a JSON line; the filter's fields come as extras.
JSON_FORMAT = "%(asctime)s %(levelname)s %(name)s %(processName)s %(message)s"


class TaskContextFilter(logging.Filter):
    """Adds ``task_id``, ``task_name``, ``queue``, ``retries`` to records logged in a task.

    With ``trace_ids`` (tracing on) also ``trace_id``/``span_id`` of the current span, as
    32/16 lowercase hex digits (W3C form). Records outside a task pass unchanged. Never
    drops a record.
    """

    def __init__(self, *, trace_ids: bool = False) -> None:
        super().__init__()
        self.trace_ids = trace_ids

    def filter(self, record: logging.LogRecord) -> bool:
        task = get_current_task()
        if task is None:
            return True
        request = task.request
        if request.id is None:
            return True
        record.task_id = request.id
        record.task_name = task.name
        record.queue = (request.delivery_info or {}).get("routing_key")
        record.retries = request.retries
        if self.trace_ids:
            _add_trace_ids(record)
        return True


def _add_trace_ids(record: logging.LogRecord) -> None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        record.trace_id = format(context.trace_id, "032x")
        record.span_id = format(context.span_id, "016x")


def json_formatter() -> logging.Formatter:
    """python-json-logger's formatter: one JSON object per line, extras included.

    Raises:
        ConfigError: python-json-logger is not installed.
    """
    try:
        from pythonjsonlogger.json import JsonFormatter  # python-json-logger >= 3.1
    except ImportError:
        raise ConfigError(
            'logging.format = "json" needs python-json-logger >= 3.1: pip install'
            " 'celery_kit[json-logs]', or set logging.format = \"text\""
        ) from None
    formatter: logging.Formatter = JsonFormatter(
        JSON_FORMAT, rename_fields={"asctime": "time", "levelname": "level"}
    )
    return formatter


def install_task_logging(app: Celery, settings: Settings) -> None:
    """Add the filter (``logging.task_context``) and JSON lines (``logging.format``).

    Raises:
        ConfigError: JSON is asked for without python-json-logger.
    """
    conf = settings.logging
    if not conf.task_context and conf.format == "text":
        return
    formatter = json_formatter() if conf.format == "json" else None
    task_filter = (
        TaskContextFilter(trace_ids=settings.tracing.enabled) if conf.task_context else None
    )

    def setup(logger: logging.Logger | None = None, **_: Any) -> None:
        try:
            for handler in (logger or logging.getLogger()).handlers:
                if task_filter is not None and task_filter not in handler.filters:
                    handler.addFilter(task_filter)
                if formatter is not None:
                    handler.setFormatter(formatter)
        except Exception:  # an observer never breaks the worker
            logging.getLogger(__name__).exception("celery_kit: task logging set-up failed")

    uid = f"celery_kit.tasklog:{id(app)}"
    signals.after_setup_logger.connect(setup, weak=False, dispatch_uid=uid)
    signals.after_setup_task_logger.connect(setup, weak=False, dispatch_uid=uid + ":task")
