"""Tracing pieces called directly: exporter choice, kit attributes, the stand-in span."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery

pytest.importorskip("opentelemetry.sdk", reason="needs celery_kit[otel] (make install)")

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from celery_kit import ConfigError, Settings, make_app
from celery_kit.observability import tracing as kit_tracing
from celery_kit.observability.tracing import (
    TracingState,
    _outcome_attributes,
    _prerun_attributes,
    exporter_factory,
    record_hard_timeout,
    tracing_of,
)
from celery_kit.state import state_of

DEAD = "redis://127.0.0.1:1/0"
TRACE_ID, PARENT_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


def app_with(**kwargs: Any) -> Celery:
    return make_app("t", settings=Settings(_environ={}, broker_url=DEAD, **kwargs))


def memory_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_tracing_is_off_by_default_and_costs_nothing_then() -> None:
    app = app_with()
    assert tracing_of(app) is None
    state = state_of(app)
    assert (state.before_publish_hooks, state.hard_timeout_hooks) == ([], [])


def test_tracing_on_registers_its_publish_and_hard_timeout_hooks() -> None:
    app = app_with(tracing={"enabled": True})
    state = state_of(app)
    assert len(state.before_publish_hooks) == 1
    assert state.hard_timeout_hooks == [record_hard_timeout]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("console", ConsoleSpanExporter), ("none", None), ("otlp", OTLPSpanExporter), ("", None)],
)
def test_exporter_comes_from_otel_traces_exporter(
    monkeypatch: pytest.MonkeyPatch, name: str, expected: Any
) -> None:
    if name:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", name)
    else:  # unset: OpenTelemetry's default, OTLP over HTTP/protobuf here
        monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
        expected = OTLPSpanExporter
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    assert exporter_factory() is expected


def test_unknown_exporter_refuses_the_app_with_a_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkn")
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER names 'zipkn'"):
        app_with(tracing={"enabled": True})
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigError, match="opentelemetry-exporter-otlp-proto-grpc"):
        app_with(tracing={"enabled": True})


def test_kit_attributes_land_on_the_current_span() -> None:
    provider, exporter = memory_provider()
    request = SimpleNamespace(
        delivery_info={"routing_key": "critical", "priority": 9},
        retries=2,
        kit_idempotency="done",
        kit_dead_letter="retries_exhausted",
    )
    task = SimpleNamespace(request=request, app=None)
    with trace.use_span(provider.get_tracer("t").start_span("run/x"), end_on_exit=True):
        _prerun_attributes(sender=task)
        _outcome_attributes(task)
    [span] = exporter.get_finished_spans()
    assert dict(span.attributes or {}) == {
        "celery_kit.queue": "critical",
        "celery_kit.priority": 9,
        "celery_kit.retries": 2,
        "celery_kit.idempotency": "done",
        "celery_kit.dead_letter": "retries_exhausted",
    }


def test_attribute_receivers_never_raise(caplog: pytest.LogCaptureFixture) -> None:
    provider, _ = memory_provider()
    with trace.use_span(provider.get_tracer("t").start_span("run/x"), end_on_exit=True):
        _prerun_attributes(sender=SimpleNamespace(request=None))  # malformed sender
    assert "could not add kit attributes" in caplog.text


def test_hard_timeout_exports_a_stand_in_span_under_the_publish_span() -> None:
    app = app_with(tracing={"enabled": True})
    provider, exporter = memory_provider()
    state = tracing_of(app)
    assert isinstance(state, TracingState)
    state.provider, state.pid = provider, os.getpid()  # as if set up in this process
    request = SimpleNamespace(
        task=SimpleNamespace(app=app),
        request_dict={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
        time_start=1_700_000_000.0,
        name="proj.slow",
        id="task-1",
    )
    record_hard_timeout(request, 30.0)
    [span] = exporter.get_finished_spans()
    assert span.name == "run/proj.slow"
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert span.start_time == 1_700_000_000 * 10**9
    assert (span.attributes or {})["celery_kit.hard_time_limit_s"] == 30.0
    assert span.status.status_code.name == "ERROR"
    assert [e.name for e in span.events] == ["exception"]


def test_hard_timeout_hook_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=kit_tracing.__name__)
    record_hard_timeout(SimpleNamespace(task=None), 1.0)  # malformed request
    assert "could not export the span of a killed task" in caplog.text
