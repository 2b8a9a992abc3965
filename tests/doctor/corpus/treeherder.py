"""Modelled on Mozilla Treeherder's settings (mozilla/treeherder, treeherder/config/settings.py).

RabbitMQ with publisher confirms, every queue declared and missing queues refused,
a soft limit of 15 min with the hard limit 30 s later, late ack, prefetch 1.
"""

from celery import Celery
from kombu import Exchange, Queue

default = Exchange("default", type="direct")
app = Celery("treeherder_like", set_as_current=False)
app.conf.update(
    broker_url="amqp://guest:guest@localhost:5672//",
    broker_transport_options={"confirm_publish": True},
    task_create_missing_queues=False,
    task_queues=[
        Queue("default", default, routing_key="default"),
        Queue("store_pulse_tasks", default, routing_key="store_pulse_tasks"),
        Queue("log_parser", default, routing_key="log_parser"),
    ],
    task_soft_time_limit=15 * 60,
    task_time_limit=15 * 60 + 30,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue="default",
    broker_connection_retry_on_startup=True,
)


@app.task(shared=False, name="store-pulse-tasks")
def store_pulse_tasks(body: dict) -> None: ...


MUST = {"no-cancel-on-connection-loss", "no-child-recycling"}
MUST_NOT = {
    "time-limit-beyond-redelivery-window",
    "late-ack-without-reject-on-worker-lost",
    "no-time-limit",
    "undeclared-queue",
    "early-ack",
    "soft-limit-not-below-hard",
}
