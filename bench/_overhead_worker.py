"""Worker entry of bench.overhead: ``BENCH_APP`` names the flavour, ``BENCH_QUEUE`` its queue."""

from __future__ import annotations

import os

from bench._overhead_apps import build

app = build(os.environ["BENCH_APP"])
