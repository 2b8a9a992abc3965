"""Tracing with real processes: a producer and a prefork worker export OTLP to a receiver.

The worker's batch processor is given a 10-minute schedule delay, so a run span can only
reach the receiver through the kit's flushes (a pool child recycled after each task, or
the main process's stand-in span for a child killed by its hard time limit).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs celery_kit[otel] (make install)")

from celery_kit.testing import WorkerFactory
from tests.integration.support.otlp import OtlpReceiver, produce, traced_env

APPS = Path(__file__).parent / "apps"
pytestmark = pytest.mark.timeout(120)
#: OTLP span kinds (opentelemetry/proto/trace/v1/trace.proto)
PRODUCER, CONSUMER = 4, 5
STATUS_ERROR = 2


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver().start()
    yield otlp
    otlp.stop()


def test_publish_and_run_spans_share_a_trace_and_carry_kit_attributes(
    kit_redis_url: str, kit_worker: WorkerFactory, receiver: OtlpReceiver
) -> None:
    env = traced_env(kit_redis_url, receiver)
    # Given a prefork worker whose children are recycled after every task
    kit_worker("kit_traced", env=env, concurrency=1, pythonpath=[APPS],
               extra_args=["--max-tasks-per-child=1"])  # fmt: skip
    # When a producer publishes a task, and an idempotent one twice
    [add_id, first_id, second_id] = produce(
        env, [("traced.add", [2, 3]), ("traced.once", ["k"]), ("traced.once", ["k"])]
    )
    # Then the producer's publish span and the worker's run span share one trace
    [publish] = [s for s in receiver.wait_for("apply_async/traced.add")
                 if s.attributes["messaging.message.id"] == add_id]  # fmt: skip
    [run] = receiver.wait_for("run/traced.add")
    assert (publish.kind, run.kind) == (PRODUCER, CONSUMER)
    assert run.trace_id == publish.trace_id
    assert run.parent_span_id == publish.span_id
    assert run.service == publish.service == "kit-traced-test"
    # And the run span carries the kit's attributes
    assert run.attributes["celery_kit.queue"] == "default"
    assert run.attributes["celery_kit.priority"] == 5
    assert run.attributes["celery_kit.retries"] == 0
    # And the idempotency outcome: the first run claimed the key, the repeat found it done
    runs = {
        s.attributes["messaging.message.id"]: s.attributes["celery_kit.idempotency"]
        for s in receiver.wait_for("run/traced.once", count=2)
    }
    assert runs == {first_id: "claimed", second_id: "done"}


def test_task_killed_by_hard_time_limit_still_has_a_run_span(
    kit_redis_url: str, kit_worker: WorkerFactory, receiver: OtlpReceiver
) -> None:
    env = traced_env(kit_redis_url, receiver)
    worker = kit_worker("kit_traced", env=env, concurrency=1, pythonpath=[APPS])
    # When a task outlives its hard time limit (1.5 s) and its pool child is killed
    [task_id] = produce(env, [("traced.stuck", [])])
    [publish] = receiver.wait_for("apply_async/traced.stuck")
    # Then the worker's main process exports a run span for it, under the publish span
    # (billiard sends SIGTERM 0.1 s before SIGKILL; a child that manages to end and flush
    # its own span in that window adds a second run span without an error status)
    [run] = receiver.wait_for("run/traced.stuck", having="celery_kit.hard_time_limit_s")
    assert "Hard time limit (1.5s) exceeded" in worker.log_text()
    assert (run.trace_id, run.parent_span_id) == (publish.trace_id, publish.span_id)
    assert run.attributes["messaging.message.id"] == task_id
    assert run.attributes["celery_kit.hard_time_limit_s"] == 1.5
    assert run.status_code == STATUS_ERROR
    assert "exception" in run.events
