"""FastAPI (docs/integrations.md): an async endpoint enqueues, a real worker runs, status polls."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.timeout(180)

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")  # fastapi.testclient (Starlette >= 1.0) needs it


@pytest.fixture
def example(kit_redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``examples.fastapi_app`` imported fresh, its app built for this test's Redis."""
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("CELERY_BROKER_URL", kit_redis_url)
    sys.modules.pop("examples.fastapi_app", None)
    yield importlib.import_module("examples.fastapi_app")
    sys.modules.pop("examples.fastapi_app", None)


def test_async_endpoint_enqueues_and_status_reports_the_result(
    example: ModuleType, kit_redis_url: str, kit_worker
) -> None:
    from fastapi.testclient import TestClient

    kit_worker(
        "examples.fastapi_app",
        env={"CELERY_BROKER_URL": kit_redis_url},
        concurrency=1,
        pythonpath=[ROOT],
        cwd=ROOT,
    )
    with TestClient(example.api) as client:
        response = client.post("/add", params={"x": 2, "y": 40})
        assert response.status_code == 202
        task_id = response.json()["task_id"]
        deadline = time.monotonic() + 60
        status: dict[str, Any] = client.get(f"/tasks/{task_id}").json()
        while not status["ready"] and time.monotonic() < deadline:
            time.sleep(0.2)
            status = client.get(f"/tasks/{task_id}").json()
    assert (status["state"], status["result"]) == ("SUCCESS", 42), status
