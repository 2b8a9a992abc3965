"""Modelled on Sentry's Celery settings (getsentry/sentry, src/sentry/conf/server.py).

Sentry long serialized tasks with pickle and accepted it, ignored results, ran on a
Redis broker and relied on per-task soft limits without a global hard limit.
"""

from celery import Celery

app = Celery("sentry_like", set_as_current=False)
app.conf.update(
    broker_url="redis://:sentry-secret@redis:6379/0",
    task_serializer="pickle",
    accept_content={"pickle", "json"},
    task_ignore_result=True,
    result_backend=None,
    worker_prefetch_multiplier=1,
    task_default_queue="default",
    task_create_missing_queues=True,
)


@app.task(shared=False, name="sentry.tasks.store.save_event", soft_time_limit=60)
def save_event(event_id: str) -> None: ...


MUST = {"unsafe-serializer", "early-ack", "no-time-limit", "connection-retry-on-startup-unset"}
MUST_NOT = {"prefetch-with-long-tasks", "results-kept-forever", "late-ack-without-time-limit"}
