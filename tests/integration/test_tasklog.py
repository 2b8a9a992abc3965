"""Task logs with real workers: JSON lines carrying the task (and its trace), opt-out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pythonjsonlogger", reason="needs celery_kit[json-logs] (make install)")
pytest.importorskip("opentelemetry.sdk", reason="needs celery_kit[otel] (make install)")

from celery_kit.testing import WorkerFactory, wait_until
from tests.integration.support.otlp import OtlpReceiver, produce, traced_env

APPS = Path(__file__).parent / "apps"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver().start()
    yield otlp
    otlp.stop()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def logged(worker: Any, message: str) -> dict[str, Any]:
    """The JSON record whose message is ``message``, once the worker has written it."""

    def find() -> list[dict[str, Any]]:
        return [r for r in json_lines(worker.log_text()) if r.get("message") == message]

    [record] = wait_until(find, timeout_s=20, what=f"log line {message!r}")
    return dict(record)


def test_json_line_carries_task_id_name_and_trace_id(
    kit_redis_url: str, kit_worker: WorkerFactory, receiver: OtlpReceiver
) -> None:
    env = traced_env(kit_redis_url, receiver, CELERY_KIT_LOGGING__FORMAT="json")
    env["OTEL_BSP_SCHEDULE_DELAY"] = "200"
    worker = kit_worker("kit_traced", env=env, concurrency=1, pythonpath=[APPS])
    [task_id] = produce(env, [("traced.add", [2, 3])])
    record = logged(worker, "adding 2 and 3")
    [run] = receiver.wait_for("run/traced.add")
    assert record["task_id"] == task_id
    assert record["task_name"] == "traced.add"
    assert (record["queue"], record["retries"], record["level"]) == ("default", 0, "INFO")
    assert record["trace_id"] == run.trace_id
    assert record["span_id"] == run.span_id
    # Celery's own lines are JSON too, and lines outside a task carry no task fields
    ready = next(r for r in json_lines(worker.log_text()) if r["message"].endswith(" ready."))
    assert "task_id" not in ready


def test_json_without_tracing_and_the_opt_out(
    kit_redis_url: str, kit_worker: WorkerFactory
) -> None:
    env = {"CELERY_BROKER_URL": kit_redis_url, "CELERY_KIT_LOGGING__FORMAT": "json"}
    worker = kit_worker("kit_traced", env=env, concurrency=1, pythonpath=[APPS])
    [task_id] = produce(env, [("traced.add", [1, 1])])
    record = logged(worker, "adding 1 and 1")
    assert (record["task_id"], record["task_name"]) == (task_id, "traced.add")
    assert "trace_id" not in record
    worker.terminate()

    # logging.task_context = false: JSON lines without the task fields
    env["CELERY_KIT_LOGGING__TASK_CONTEXT"] = "false"
    worker = kit_worker("kit_traced", env=env, concurrency=1, pythonpath=[APPS])
    produce(env, [("traced.add", [4, 4])])
    assert "task_id" not in logged(worker, "adding 4 and 4")


def test_unreachable_trace_collector_does_not_break_tasks(
    kit_redis_url: str, kit_worker: WorkerFactory
) -> None:
    # the OTLP endpoint is a closed port: export fails in the background, tasks still run
    env = {
        "CELERY_BROKER_URL": kit_redis_url,
        "CELERY_KIT_TRACING__ENABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "CELERY_KIT_LOGGING__FORMAT": "json",
    }
    worker = kit_worker("kit_traced", env=env, concurrency=1, pythonpath=[APPS])
    produce(env, [("traced.add", [5, 5])])
    assert len(logged(worker, "adding 5 and 5")["trace_id"]) == 32
    assert "succeeded" in worker.log_text()
