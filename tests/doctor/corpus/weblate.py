"""Modelled on Weblate's example settings (WeblateOrg/weblate, weblate/settings_example.py).

Redis broker and results, task routes to named queues without declared queues, a
memory cap per child, and a task that retries every exception without backoff.
"""

from celery import Celery

app = Celery("weblate_like", set_as_current=False)
app.conf.update(
    broker_url="redis://localhost:6379/0",
    result_backend="redis://localhost:6379/0",
    worker_max_memory_per_child=200000,
    task_routes={
        "weblate.trans.tasks.auto_translate*": {"queue": "translate"},
        "weblate.accounts.tasks.notify_*": {"queue": "notify"},
        "weblate.memory.tasks.*": {"queue": "memory"},
    },
)


@app.task(
    shared=False,
    name="weblate.accounts.tasks.send_mails",
    autoretry_for=(Exception,),
    max_retries=5,
)
def send_mails(mails: list[dict]) -> None: ...


MUST = {"broad-autoretry", "early-ack", "prefetch-with-long-tasks"}
MUST_NOT = {"no-child-recycling", "undeclared-queue", "results-kept-forever"}
