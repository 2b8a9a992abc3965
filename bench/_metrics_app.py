"""bench.metrics worker app: one no-op task, built by the kit from the environment."""

from __future__ import annotations

from celery_kit import make_app

app = make_app("bench_metrics")


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    """Does nothing: what is measured is the per-task cost around it."""
