"""The demo's Celery app: built by make_app, with short limits so the run is quick."""

from __future__ import annotations

import time

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from celery_kit import make_app

# Broker from CELERY_BROKER_URL (the demo sets it); limits short enough to watch.
app = make_app(
    "demo",
    tasks={
        "soft_time_limit_s": 2,
        "time_limit_s": 4,
        "max_countdown_s": 10,
        "retry_backoff_max_s": 4,
    },
    broker={"visibility_margin_s": 10},
)


@app.task(name="demo.charge")
def charge(order_id: str, cents: int) -> dict[str, object]:
    """Succeeds at once."""
    return {"order_id": order_id, "charged_cents": cents}


@app.task(
    name="demo.flaky_api",
    bind=True,
    autoretry_for=(ConnectionError,),
    retry_backoff=1,
    retry_backoff_max=4,
    max_retries=5,
)
def flaky_api(self: Task, fail_times: int) -> dict[str, object]:
    """Fails with a transient error ``fail_times`` times, then succeeds."""
    if self.request.retries < fail_times:
        raise ConnectionError(f"upstream unavailable (attempt {self.request.retries + 1})")
    return {"attempts": self.request.retries + 1}


@app.task(name="demo.slow_report")
def slow_report(report_id: str) -> dict[str, object]:
    """Runs past the 2 s soft limit, catches it and saves partial work."""
    started = time.monotonic()
    try:
        time.sleep(30)
    except SoftTimeLimitExceeded:
        return {
            "report_id": report_id,
            "partial": True,
            "ran_s": round(time.monotonic() - started, 1),
        }
    return {"report_id": report_id, "partial": False}
