"""Progress and status on a real worker: a web-style endpoint built on ``task_status``.

Given/When/Then; the endpoint is a real HTTP server (wsgiref) queried over a socket.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import pytest

from celery_kit.tasks.progress import task_statuses
from celery_kit.testing import wait_until as wait_for
from tests.integration.support.observe import APPS, obs_env, producer, status_server

pytestmark = pytest.mark.timeout(120)


def _get(port: int, task_id: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status/{task_id}", timeout=10) as r:
        return json.loads(r.read())


def test_status_endpoint_shows_progress_steps_then_the_result(
    kit_redis_url: str, kit_worker, tmp_path: Path
) -> None:
    env = obs_env(kit_redis_url, kit_redis_url, tmp_path)
    kit_worker("kit_observe", env=env, concurrency=2, pythonpath=[APPS])
    app = producer(env)
    with status_server(app) as port:
        # Given a task that reports 3 steps, 1 s apart
        result = app.send_task("kit_observe.steps", (3, 1.0))
        seen: list[dict] = []

        def in_progress() -> dict | None:
            status = _get(port, result.id)
            seen.append(status)
            return status if status["state"] == "PROGRESS" else None

        # When the endpoint is polled while it runs
        running = wait_for(in_progress, timeout_s=30, what="PROGRESS")
        # Then it shows PROGRESS with the step and how far it is
        assert running["ready"] is False
        assert running["progress"]["step"].startswith("step ")
        assert running["progress"]["total"] == 3
        assert 0 <= running["progress"]["percent"] < 100
        assert running["updated_at"] is not None
        assert running["result"] is None

        # And then SUCCESS with the result
        def finished() -> dict | None:
            status = _get(port, result.id)
            seen.append(status)
            return status if status["state"] == "SUCCESS" else None

        done = wait_for(finished, timeout_s=30, what="SUCCESS")
        assert done["result"] == {"done": 3}
        assert done["ready"] is True
        assert done["successful"] is True
        assert done["progress"] is None
        assert done["error"] is None
        assert done["date_done"] is not None
        steps = {s["progress"]["step"] for s in seen if s["state"] == "PROGRESS"}
        assert steps <= {"step 1/3", "step 2/3", "step 3/3"}
        assert len(steps) >= 2

    # And the batch variant reads several ids at once (unknown ids are PENDING)
    failed = app.send_task("kit_observe.fail")
    failed.get(timeout=30, propagate=False)
    unknown = uuid.uuid4().hex
    many = task_statuses(app, [result.id, failed.id, unknown])
    assert many[result.id]["result"] == {"done": 3}
    assert many[failed.id]["state"] == "FAILURE"
    assert many[failed.id]["error"] == {"type": "ValueError", "message": "boom"}
    assert many[unknown]["state"] == "PENDING"
