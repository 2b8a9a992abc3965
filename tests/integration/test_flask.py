"""Flask: a route enqueues, a real worker runs the task inside the Flask app context.

The Flask app runs in the test process (its test client); the worker is a real
``celery -A make_celery worker`` built from the same example factory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import _state

EXAMPLE = Path(__file__).parents[2] / "examples" / "flask_app"
pytestmark = pytest.mark.timeout(180)

flask = pytest.importorskip("flask")


@pytest.fixture
def client(kit_redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The example app, configured like the worker but for REPORT_TITLE."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from webapp import create_app

    previous = _state.default_app
    web = create_app({"CELERY": {"broker_url": kit_redis_url}, "TESTING": True})
    yield web.test_client()
    _state.default_app = previous


def status_when_ready(client: Any, task_id: str, *, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status: dict[str, Any] = client.get(f"/tasks/{task_id}").get_json()
        if status["ready"] or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def test_route_enqueues_worker_runs_in_app_context_status_route_reports(
    client: Any, kit_redis_url: str, kit_worker
) -> None:
    # Given a worker whose Flask config says REPORT_TITLE="Quarterly report"
    env = {"FLASK_CELERY__broker_url": kit_redis_url, "FLASK_REPORT_TITLE": "Quarterly report"}
    kit_worker("make_celery", env=env, concurrency=1, pythonpath=[EXAMPLE], cwd=EXAMPLE)

    # When a route enqueues a report build
    response = client.post("/reports/r-42")
    assert response.status_code == 202
    task_id = response.get_json()["task_id"]
    # Then the status route shows it succeeded, with a result made inside the worker's
    # app context (current_app.config of the worker's Flask app, not the test's)
    status = status_when_ready(client, task_id, timeout_s=60)
    assert status["state"] == "SUCCESS", status
    result = status["result"]
    assert result["report_id"] == "r-42"
    assert result["title"] == "Quarterly report"

    # And the kit's idempotency_key option works under the Flask task class: a second
    # build of the same report returns the stored result instead of running again
    again = client.post("/reports/r-42").get_json()["task_id"]
    assert again != task_id
    second = status_when_ready(client, again, timeout_s=60)
    assert second["state"] == "SUCCESS", second
    assert second["result"]["build_id"] == result["build_id"]


def test_status_route_of_an_unknown_task_is_pending(client: Any) -> None:
    status = client.get("/tasks/no-such-task").get_json()
    assert (status["state"], status["ready"]) == ("PENDING", False)
