"""Task progress and status: a ``PROGRESS`` state with step and percent, read as plain dicts.

Inside a task, :func:`progress` records where it is; a web endpoint returns
:func:`task_status` (or :func:`task_statuses` for many ids in one round trip on Redis).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery import current_task

from celery_kit.exceptions import CeleryKitError

if TYPE_CHECKING:
    from celery import Celery, Task

__all__ = [
    "MIN_INTERVAL_S",
    "PROGRESS",
    "ProgressError",
    "progress",
    "task_status",
    "task_statuses",
]

#: The custom state a task is in between STARTED and its outcome once it reports progress.
PROGRESS = "PROGRESS"
#: Reports closer together than this are skipped unless the step changes or the task is
#: done: a loop calling progress() must not turn into a write storm on the result backend.
MIN_INTERVAL_S = 0.5
#: Celery's ready states (``celery.states.READY_STATES``), kept here to import nothing.
_READY = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
_ERROR_STATES = frozenset({"FAILURE", "RETRY", "REVOKED"})


class ProgressError(CeleryKitError):
    """``progress()`` was called outside a task, with bad values, or without a backend."""


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc).isoformat()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    return str(value)


def progress(
    *,
    step: str | None = None,
    percent: float | None = None,
    current: int | None = None,
    total: int | None = None,
    message: str | None = None,
    task: Task[Any, Any] | None = None,
    min_interval_s: float = MIN_INTERVAL_S,
) -> bool:
    """Record the running task's progress (state ``PROGRESS``) in the result backend.

    Args:
        step: what the task is doing now, e.g. ``"rendering"``.
        percent: 0-100; derived from ``current``/``total`` when omitted.
        current: items done so far.
        total: items in all.
        message: a short human-readable note.
        task: the task (default: the one running in this thread).
        min_interval_s: skip a report sooner than this after the last one, unless the
            step changes or ``percent`` reaches 100.

    Returns:
        True if the report was written, False if it was throttled.

    Raises:
        ProgressError: outside a running task, a percent out of 0-100, or no result
            backend to write to.
    """
    if task is None:
        task = current_task
    request = getattr(task, "request", None)
    if task is None or request is None or getattr(request, "id", None) is None:
        raise ProgressError("progress() must be called inside a running task (or pass task=)")
    if percent is None and current is not None and total:
        percent = 100.0 * current / total
    if percent is not None and not 0 <= percent <= 100:
        raise ProgressError(f"progress(percent={percent}) must be between 0 and 100")
    now = time.time()
    last = getattr(request, "_kit_progress", None)
    final = percent is not None and percent >= 100
    if last is not None and now - last[0] < min_interval_s and step == last[1] and not final:
        return False
    meta = {
        "step": step,
        "percent": None if percent is None else round(float(percent), 2),
        "current": current,
        "total": total,
        "message": message,
        "updated_at": _iso(now),
    }
    try:
        task.update_state(state=PROGRESS, meta={k: v for k, v in meta.items() if v is not None})
    except NotImplementedError:  # DisabledBackend
        raise ProgressError(
            "progress() needs a result backend: set result_backend (or use a Redis broker)"
        ) from None
    request._kit_progress = (now, step)
    return True


def _status(task_id: str, meta: dict[str, Any], *, traceback: bool) -> dict[str, Any]:
    state = str(meta.get("status") or "PENDING")
    result = meta.get("result")
    out: dict[str, Any] = {
        "id": task_id,
        "state": state,
        "ready": state in _READY,
        "successful": state == "SUCCESS",
        "progress": None,
        "result": None,
        "error": None,
        "worker": None,
        "updated_at": None,
        "date_done": _iso(meta.get("date_done")),
    }
    if state == PROGRESS and isinstance(result, dict):
        out["progress"] = {k: v for k, v in result.items() if k != "updated_at"}
        out["updated_at"] = result.get("updated_at")
    elif state == "STARTED" and isinstance(result, dict):
        out["worker"] = result.get("hostname")
    elif state == "SUCCESS":
        out["result"] = result
    elif state in _ERROR_STATES and result is not None:
        error = {"type": type(result).__name__, "message": str(result)}
        if traceback and meta.get("traceback"):
            error["traceback"] = meta["traceback"]
        out["error"] = error
    return out


def task_status(app: Celery, task_id: str, *, traceback: bool = False) -> dict[str, Any]:
    """A JSON-ready status of one task, for a web endpoint.

    Keys: ``id``, ``state`` (PENDING, STARTED, PROGRESS, RETRY, SUCCESS, FAILURE, REVOKED),
    ``ready``, ``successful``, ``progress`` (``{step, percent, current, total, message}``
    while PROGRESS), ``result`` (SUCCESS), ``error`` (``{type, message}``), ``worker``
    (STARTED), ``updated_at`` (last progress report) and ``date_done`` (ISO 8601).
    An unknown id is PENDING: Celery cannot tell "queued" from "never sent".

    Args:
        app: the Celery app (its result backend is read).
        task_id: the task's id.
        traceback: include the traceback of a failure (not for public endpoints).
    """
    meta = app.backend.get_task_meta(task_id)
    return _status(task_id, dict(meta), traceback=traceback)


def task_statuses(
    app: Celery, task_ids: Iterable[str], *, traceback: bool = False
) -> dict[str, dict[str, Any]]:
    """:func:`task_status` for many ids; one ``MGET`` on key-value backends such as Redis."""
    ids = list(dict.fromkeys(str(i) for i in task_ids))
    backend: Any = app.backend
    if not ids:
        return {}
    if hasattr(backend, "get_key_for_task") and hasattr(backend, "mget"):
        try:
            values = backend.mget([backend.get_key_for_task(i) for i in ids])
        except NotImplementedError:
            values = None
        if values is not None:
            out = {}
            for task_id, raw in zip(ids, values, strict=True):
                meta = backend.decode_result(raw) if raw else {"status": "PENDING"}
                out[task_id] = _status(task_id, dict(meta), traceback=traceback)
            return out
    return {i: task_status(app, i, traceback=traceback) for i in ids}
