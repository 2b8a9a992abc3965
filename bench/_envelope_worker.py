"""Worker entry of bench.envelope: ``BENCH_APP`` names the flavour, ``BENCH_GUARD=0``
removes the kit's envelope guard (consumer bootstep) to measure what it costs."""

from __future__ import annotations

import os

from bench._reliability_apps import build

app = build(os.environ["BENCH_APP"])
if os.environ.get("BENCH_GUARD") == "0":
    from celery_kit.tasks.consumer_guard import EnvelopeGuard

    app.steps["consumer"].discard(EnvelopeGuard)
