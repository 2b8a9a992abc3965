"""A tiny OTLP/HTTP trace receiver for tests, and a producer process for ``kit_traced``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from celery_kit.testing import wait_until

APPS = Path(__file__).parents[1] / "apps"


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return None if kind is None else getattr(any_value, kind)


@dataclass
class Span:
    """One received span, ids as lowercase hex."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    status_code: int
    service: str
    attributes: dict[str, Any]
    links: list[str]
    events: list[str]


@dataclass
class OtlpReceiver:
    """``POST /v1/traces`` with protobuf bodies, as the OTLP/HTTP exporter sends them."""

    spans: list[Span] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> OtlpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver._collect(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def _collect(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(
                        Span(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            status_code=s.status.code,
                            service=str(resource.get("service.name")),
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            links=[link.span_id.hex() for link in s.links],
                            events=[e.name for e in s.events],
                        )
                    )

    def wait_for(
        self,
        name: str,
        *,
        count: int = 1,
        having: str | None = None,
        timeout_s: float = 30.0,
    ) -> list[Span]:
        """The spans called ``name`` (with attribute ``having``) once ``count`` have arrived."""

        def found() -> list[Span]:
            named = [
                s
                for s in list(self.spans)
                if s.name == name and (having is None or having in s.attributes)
            ]
            return named if len(named) >= count else []

        result: list[Span] = wait_until(found, timeout_s=timeout_s, what=f"span {name!r}")
        return result


PRODUCE = """
import json, sys
from kit_traced import app
results = [app.tasks[name].apply_async(args) for name, args in json.loads(sys.argv[1])]
print(json.dumps([r.id for r in results]))
for r in results:
    r.get(timeout=30, propagate=False)
"""


def traced_env(broker_url: str, receiver: OtlpReceiver, **extra: str) -> dict[str, str]:
    return {
        "CELERY_BROKER_URL": broker_url,
        "CELERY_KIT_TRACING__ENABLED": "true",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "kit-traced-test",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        **extra,
    }


def produce(env: dict[str, str], calls: list[tuple[str, list[object]]]) -> list[str]:
    """Publish from a separate producer process (tracing sets a process-wide provider)."""
    child = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY", "OTEL"))}
    child.update(env, PYTHONPATH=str(APPS))
    done = subprocess.run(
        [sys.executable, "-c", PRODUCE, json.dumps(calls)],
        env=child,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    ids: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return ids
