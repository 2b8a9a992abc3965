"""Worker entry of bench.reliability: ``BENCH_APP`` names the flavour (see the apps module)."""

from __future__ import annotations

import os

from bench._reliability_apps import build

app = build(os.environ["BENCH_APP"])
