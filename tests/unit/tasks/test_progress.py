"""progress() and status dicts without a backend: a recording task, synthetic metadata."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from celery.app.task import Context

from celery_kit.tasks.progress import PROGRESS, ProgressError, _status, progress


class Recorder:
    """A task stand-in recording update_state calls (the backend is not under test)."""

    def __init__(self) -> None:
        self.request = Context(id="t-1")
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def update_state(self, *, state: str, meta: dict[str, Any]) -> None:
        self.calls.append((state, meta))


def test_progress_writes_state_step_and_percent() -> None:
    task = Recorder()
    assert progress(step="load", current=1, total=4, task=task)  # type: ignore[arg-type]
    state, meta = task.calls[0]
    assert state == PROGRESS
    assert meta["step"] == "load"
    assert meta["percent"] == 25.0
    assert meta["current"] == 1
    assert meta["total"] == 4
    assert "updated_at" in meta
    assert "message" not in meta


def test_progress_is_throttled_unless_the_step_changes_or_it_is_done() -> None:
    task: Any = Recorder()
    assert progress(step="a", percent=1, task=task)
    assert not progress(step="a", percent=2, task=task)  # too soon, same step
    assert progress(step="b", percent=3, task=task)  # a new step is always written
    assert progress(step="b", percent=100, task=task)  # and so is the end
    assert progress(step="b", percent=4, task=task, min_interval_s=0)
    assert [m["percent"] for _, m in task.calls] == [1, 3, 100, 4]


def test_progress_outside_a_task_or_out_of_range_is_refused() -> None:
    with pytest.raises(ProgressError, match="inside a running task"):
        progress(step="x")
    with pytest.raises(ProgressError, match="between 0 and 100"):
        progress(percent=120, task=Recorder())  # type: ignore[arg-type]


def test_progress_without_a_backend_says_what_to_set() -> None:
    task: Any = SimpleNamespace(request=Context(id="t"), update_state=_disabled)
    with pytest.raises(ProgressError, match="result backend"):
        progress(step="x", task=task)


def _disabled(**_: Any) -> None:
    raise NotImplementedError("No result backend is configured.")


def test_status_of_each_state() -> None:
    running = _status(
        "i",
        {"status": PROGRESS, "result": {"step": "s", "percent": 50.0, "updated_at": "T"}},
        traceback=False,
    )
    assert running["progress"] == {"step": "s", "percent": 50.0}
    assert running["updated_at"] == "T"
    assert not running["ready"]
    done = datetime(2026, 1, 1, tzinfo=timezone.utc)
    success = _status("i", {"status": "SUCCESS", "result": [1], "date_done": done}, traceback=False)
    assert success["result"] == [1]
    assert success["successful"]
    assert success["date_done"] == "2026-01-01T00:00:00+00:00"
    failure = _status(
        "i", {"status": "FAILURE", "result": KeyError("k"), "traceback": "TB"}, traceback=True
    )
    assert failure["error"] == {"type": "KeyError", "message": "'k'", "traceback": "TB"}
    hidden = _status(
        "i", {"status": "FAILURE", "result": KeyError("k"), "traceback": "TB"}, traceback=False
    )
    assert "traceback" not in hidden["error"]
    started = _status(
        "i", {"status": "STARTED", "result": {"hostname": "w@h", "pid": 1}}, traceback=False
    )
    assert started["worker"] == "w@h"
    assert _status("i", {"status": "PENDING", "result": None}, traceback=False)["ready"] is False
