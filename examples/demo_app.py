"""The demo's Celery app: topology from examples/demo.toml, tasks for every kit feature."""

from __future__ import annotations

import time
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded

from celery_kit import PermanentError, RetryingTask, TransientError, make_app
from celery_kit.coordination.client import kit_redis
from celery_kit.tasks.progress import progress

# Broker from CELERY_BROKER_URL (the demo sets it); everything else from the TOML file.
app = make_app("demo", config=Path(__file__).with_name("demo.toml"))


def _count(name: str) -> None:
    """Count one real execution of a task body (the demo's report reads these)."""
    client = kit_redis(app).client
    client.incr(f"demo:runs:{name}")
    client.expire(f"demo:runs:{name}", 3600)


@app.task(name="demo.payments.charge", idempotency_key="charge:{order_id}")
def charge(order_id: str, cents: int) -> dict[str, object]:
    """Charges once per order, however often it is submitted."""
    _count("charge")
    time.sleep(0.2)  # the payment provider
    return {"order_id": order_id, "charged_cents": cents, "charged_at": time.time()}


@app.task(name="demo.payments.refund", base=RetryingTask)
def refund(order_id: str) -> None:
    """Always refused by the provider: a permanent error goes to the dead-letter queue."""
    raise PermanentError(f"refund of {order_id} refused: card closed")


@app.task(name="demo.emails.send")
def send_email(to: str) -> str:
    time.sleep(0.05)
    return f"sent to {to}"


@app.task(name="demo.emails.summary")
def summary(results: list[str]) -> str:
    """The callback of a chord: runs once every e-mail of the group is sent."""
    return f"{len(results)} e-mails sent"


@app.task(name="demo.api.flaky", base=RetryingTask, bind=True)
def flaky_api(self: RetryingTask, fail_times: int) -> dict[str, object]:
    """Fails with a transient error ``fail_times`` times, then succeeds."""
    if self.request.retries < fail_times:
        raise TransientError(f"upstream 503 (attempt {self.request.retries + 1})")
    return {"attempts": self.request.retries + 1}


@app.task(name="demo.reports.build")
def build_report(report_id: str, pages: int) -> dict[str, object]:
    """A bulk job that reports its progress."""
    for page in range(1, pages + 1):
        time.sleep(0.15)
        progress(step=f"page {page}/{pages}", current=page, total=pages)
    return {"report_id": report_id, "pages": pages}


@app.task(name="demo.reports.slow")
def slow_report(report_id: str) -> dict[str, object]:
    """Runs past the 2 s soft limit, catches it and saves partial work."""
    started = time.monotonic()
    try:
        time.sleep(30)
    except SoftTimeLimitExceeded:
        ran_s = round(time.monotonic() - started, 1)
        return {"report_id": report_id, "partial": True, "ran_s": ran_s}
    return {"report_id": report_id, "partial": False}
