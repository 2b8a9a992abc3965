"""Modelled on Saleor's Django settings (saleor/saleor, saleor/settings.py).

CELERY_* settings read through ``config_from_object(namespace="CELERY")``: JSON only,
a Redis broker, results in Redis, no time limits or acknowledgement settings.
"""

from celery import Celery


class Settings:
    CELERY_BROKER_URL = "redis://localhost:6379/1"
    CELERY_TASK_ALWAYS_EAGER = False
    CELERY_ACCEPT_CONTENT = ["json"]
    CELERY_TASK_SERIALIZER = "json"
    CELERY_RESULT_SERIALIZER = "json"
    CELERY_RESULT_BACKEND = "redis://localhost:6379/2"
    CELERY_RESULT_EXPIRES = None


app = Celery("saleor_like", set_as_current=False)
app.config_from_object(Settings, namespace="CELERY")


@app.task(shared=False, name="saleor.order.tasks.send_order_confirmation")
def send_order_confirmation(order_id: int) -> None: ...


MUST = {"early-ack", "no-time-limit", "prefetch-with-long-tasks", "results-kept-forever"}
MUST_NOT = {"unsafe-serializer", "late-ack-without-reject-on-worker-lost", "always-eager"}
