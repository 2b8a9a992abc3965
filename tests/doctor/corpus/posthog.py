"""Modelled on PostHog's Celery setup (PostHog/posthog, posthog/settings/celery.py).

A Redis broker and result backend, results ignored by default, Redis priorities
switched on with a task default priority, and the default priority steps.
"""

from datetime import timedelta

from celery import Celery

app = Celery("posthog_like", set_as_current=False)
app.conf.update(
    broker_url="redis://localhost:6379/0",
    result_backend="redis://localhost:6379/0",
    task_ignore_result=True,
    result_expires=timedelta(days=4),
    task_default_priority=5,
    broker_transport_options={"queue_order_strategy": "priority"},
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
)


@app.task(shared=False, name="posthog.tasks.calculate_cohort")
def calculate_cohort(cohort_id: int) -> None: ...


MUST = {"redis-priority-default-steps", "prefetch-with-long-tasks", "results-backend-unused"}
MUST_NOT = {
    "connection-retry-on-startup-unset",
    "results-kept-forever",
    "unsafe-serializer",
    "task-routing-attribute",  # task_default_priority is an app setting, not a task attribute
}
