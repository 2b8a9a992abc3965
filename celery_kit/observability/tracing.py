"""OpenTelemetry traces for kit apps, through ``opentelemetry-instrumentation-celery``.

Set up once per process, after any fork: in each prefork pool child at
``worker_process_init``, in a producer on its first publish (a ``before_publish_hooks``
entry in ``KitState``), in a solo/threads worker at ``worker_init``. Spans are flushed when a
pool child exits (``max_tasks_per_child`` recycling leaves by ``os._exit``, which skips the
SDK's ``atexit`` flush) and at worker shutdown. A child killed by its hard time limit takes
its open span with it; the worker's main process then exports a stand-in run span (same
parent, same start, ``TimeLimitExceeded``) from :func:`record_hard_timeout`, a
``hard_timeout_hooks`` entry that ``KitRequest.on_timeout`` calls.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import signals

from celery_kit.exceptions import ConfigError
from celery_kit.state import find_state, state_of
from celery_kit.topology.priority import show_kit_priority

if TYPE_CHECKING:
    from celery import Celery
    from opentelemetry.sdk.trace import TracerProvider

    from celery_kit.config.operations import TracingSettings
    from celery_kit.config.settings import Settings

__all__ = ["ATTRIBUTES", "exporter_factory", "install_tracing", "record_hard_timeout", "tracing_of"]

logger = logging.getLogger(__name__)

#: Span attributes the kit adds to run spans (beside the instrumentation's ``celery.*``).
ATTRIBUTES = {
    "queue": "celery_kit.queue",
    "priority": "celery_kit.priority",
    "retries": "celery_kit.retries",
    "idempotency": "celery_kit.idempotency",
    "dead_letter": "celery_kit.dead_letter",
    "hard_time_limit_s": "celery_kit.hard_time_limit_s",
}
#: Request attributes the kit's guards set (``guards.py``) and the span receives.
REQUEST_IDEMPOTENCY, REQUEST_DEAD_LETTER = "kit_idempotency", "kit_dead_letter"


@dataclass
class TracingState:
    """One app's tracing state, kept in its ``KitState`` (set up again after a fork)."""

    app: Celery
    settings: TracingSettings
    #: Makes this process's span exporter (``None``: ``OTEL_TRACES_EXPORTER=none``).
    exporter: Callable[[], Any] | None = None
    pid: int = 0
    provider: TracerProvider | None = None


def tracing_of(app: Celery) -> TracingState | None:
    """The app's tracing state, ``None`` when ``[tracing]`` is off."""
    kit = find_state(app)
    return kit.get(TracingState) if kit is not None else None


def install_tracing(app: Celery, settings: Settings) -> None:
    """Connect the per-process set-up and the flushes; nothing is traced until then.

    Raises:
        ConfigError: tracing is on but the ``otel`` extra is not installed.
    """
    if not settings.tracing.enabled:
        return
    try:
        import opentelemetry.instrumentation.celery
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"tracing.enabled = true needs OpenTelemetry ({exc.name} is missing):"
            " pip install 'celery_kit[otel]', or set tracing.enabled = false"
        ) from None
    state = state_of(app).put(TracingState(app, settings.tracing, exporter=exporter_factory()))
    state_of(app).before_publish_hooks.append(lambda: _set_up_here(state))
    state_of(app).hard_timeout_hooks.append(record_hard_timeout)
    uid = f"celery_kit.tracing:{id(app)}"

    def child_init(**_: Any) -> None:
        _guarded(ensure, state)

    def main_init(sender: Any = None, **_: Any) -> None:
        pool = getattr(sender, "pool_cls", None)
        if "prefork" not in str(getattr(pool, "__module__", pool)):
            _guarded(ensure, state)  # solo/threads: tasks run in this process

    def flush(**_: Any) -> None:
        _guarded(_flush, state)

    def outcome(sender: Any = None, **_: Any) -> None:
        _guarded(_outcome_attributes, sender)

    signals.worker_process_init.connect(child_init, weak=False, dispatch_uid=uid + ":child")
    signals.worker_init.connect(main_init, weak=False, dispatch_uid=uid + ":main")
    signals.worker_process_shutdown.connect(flush, weak=False, dispatch_uid=uid + ":exit")
    signals.worker_shutdown.connect(flush, weak=False, dispatch_uid=uid + ":shutdown")
    # these fire before task_postrun, where the instrumentation ends the run span
    for signal in (signals.task_success, signals.task_failure, signals.task_retry):
        signal.connect(outcome, weak=False, dispatch_uid=uid + ":outcome")


def _set_up_here(state: TracingState) -> None:
    """Before a publish: set tracing up if this process has not yet (one comparison)."""
    if state.pid != os.getpid():
        _guarded(ensure, state)


def _guarded(func: Callable[..., Any], *args: Any) -> None:
    try:
        func(*args)
    except Exception:  # an observer never breaks the worker
        logger.exception("celery_kit: tracing hook %s failed", getattr(func, "__name__", func))


def ensure(state: TracingState) -> None:
    """Set up tracing in this process if not yet done since the last fork."""
    if state.pid == os.getpid():
        return
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    state.pid = os.getpid()
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # the application's own, or inherited
        state.provider = current
    else:
        state.provider = _new_provider(state)
        trace.set_tracer_provider(state.provider)
    CeleryInstrumentor().instrument(  # type: ignore[no-untyped-call]
        tracer_provider=state.provider, use_span_links=state.settings.span_links
    )
    # after the instrumentation's own task_prerun receiver, so its span is current
    signals.task_prerun.connect(
        _prerun_attributes, weak=False, dispatch_uid="celery_kit.tracing:prerun"
    )


def _new_provider(state: TracingState) -> TracerProvider:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({})  # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
    name = state.settings.service_name
    if name or str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: name or str(state.app.main)}))
    provider = TracerProvider(resource=resource)
    if state.exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(state.exporter()))
    return provider


def exporter_factory() -> Callable[[], Any] | None:
    """The span exporter class OpenTelemetry's environment names (``OTEL_TRACES_EXPORTER``).

    These are OpenTelemetry's own variables, read here as its SDK reads them, not kit
    settings: ``otlp`` (default; HTTP/protobuf unless ``OTEL_EXPORTER_OTLP_PROTOCOL`` says
    grpc), ``console``, ``none``, or any installed ``opentelemetry_traces_exporter``.
    Resolved when the app is built, so a wrong name stops the worker from starting.

    Raises:
        ConfigError: no installed package provides the named exporter.
    """
    env = os.environ
    name = env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower()
    if name == "none":
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter
    if name == "otlp":
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        name = "otlp_proto_grpc" if protocol == "grpc" else "otlp_proto_http"
    from importlib.metadata import entry_points

    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER names {name!r}, which no installed package provides:"
            " install its exporter (otlp over grpc: opentelemetry-exporter-otlp-proto-grpc)"
            " or use otlp (HTTP), console or none"
        )
    factory: Callable[[], Any] = next(iter(found)).load()
    return factory


def _flush(state: TracingState) -> None:
    if state.provider is not None and state.pid == os.getpid():
        state.provider.force_flush(int(state.settings.flush_timeout_s * 1000))


def _current_span() -> Any:
    from opentelemetry import trace

    span = trace.get_current_span()
    return span if span.is_recording() else None


def _prerun_attributes(sender: Any = None, **_: Any) -> None:
    try:
        span = _current_span()
        if span is None or sender is None:
            return
        request = sender.request
        info = request.delivery_info or {}
        span.set_attribute(ATTRIBUTES["queue"], str(info.get("routing_key") or ""))
        span.set_attribute(ATTRIBUTES["retries"], int(request.retries or 0))
        if info.get("priority") is not None and not info.get("is_eager"):
            # the kit's value in place of the broker's (KitTask.__call__, later, would)
            show_kit_priority(sender.app, request, info)
            info = request.delivery_info or {}
        priority = info.get("priority")
        if priority is not None:
            span.set_attribute(ATTRIBUTES["priority"], priority)
    except Exception:
        logger.exception("celery_kit: could not add kit attributes to the run span")


def _outcome_attributes(task: Any) -> None:
    span = _current_span()
    if span is None or task is None:
        return
    request = task.request
    idempotency = getattr(request, REQUEST_IDEMPOTENCY, None)
    if idempotency:
        span.set_attribute(ATTRIBUTES["idempotency"], str(idempotency))
    dead = getattr(request, REQUEST_DEAD_LETTER, None)
    if dead:
        span.set_attribute(ATTRIBUTES["dead_letter"], str(dead))


def record_hard_timeout(request: Any, timeout_s: float) -> None:
    """Export a stand-in run span for a task whose pool child was killed (main process).

    The child's own span was never ended, so it died with the child. This one has the
    same parent (from the message's trace headers), the task's start time as the main
    process saw it, and an error status; ``celery_kit.hard_time_limit_s`` marks it.
    """
    try:
        state = tracing_of(request.task.app)
        if state is None:
            return
        ensure(state)
        _stand_in_span(state, request, timeout_s)
        _flush(state)
    except Exception:
        logger.exception("celery_kit: could not export the span of a killed task")


def _stand_in_span(state: TracingState, request: Any, timeout_s: float) -> None:
    from celery.exceptions import TimeLimitExceeded
    from opentelemetry import trace
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind, Status, StatusCode

    assert state.provider is not None
    tracer = state.provider.get_tracer("celery_kit.tracing")
    parent = extract(dict(request.request_dict or {}))
    started = getattr(request, "time_start", None)
    span = tracer.start_span(
        f"run/{request.name}",
        context=None if state.settings.span_links else parent,
        links=[trace.Link(trace.get_current_span(parent).get_span_context())]
        if state.settings.span_links
        else None,
        kind=SpanKind.CONSUMER,
        start_time=int(started * 1e9) if started else None,
    )
    exc = TimeLimitExceeded(timeout_s)
    span.set_attribute("celery.action", "run")
    span.set_attribute("celery.task_name", str(request.name))
    span.set_attribute("messaging.message.id", str(request.id))
    span.set_attribute(ATTRIBUTES["hard_time_limit_s"], float(timeout_s))
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"hard time limit ({timeout_s:g} s) exceeded"))
    span.end()
