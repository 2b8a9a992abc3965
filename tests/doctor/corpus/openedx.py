"""Modelled on Open edX's LMS settings (openedx/edx-platform, lms/envs/common.py).

RabbitMQ, queues declared as a dict, prefetch 1, results in the Django cache, and a
task that names a queue outside the declared ones while missing queues are created.
"""

from celery import Celery

HIGH = "edx.lms.core.high"
DEFAULT = "edx.lms.core.default"

app = Celery("openedx_like", set_as_current=False)
app.conf.update(
    broker_url="amqp://celery:celery-pw@rabbitmq:5672//",
    broker_heartbeat=60,
    result_backend="django-cache",
    task_ignore_result=False,
    task_store_errors_even_if_ignored=True,
    task_default_queue=DEFAULT,
    task_create_missing_queues=True,
    task_queues={HIGH: {}, DEFAULT: {}},
    worker_prefetch_multiplier=1,
    task_routes={"lms.djangoapps.grades.tasks.*": {"queue": "edx.lms.core.grades"}},
)


@app.task(shared=False, name="lms.djangoapps.grades.tasks.compute_grades")
def compute_grades(course_id: str) -> None: ...


MUST = {"undeclared-queue", "early-ack", "no-time-limit"}
MUST_NOT = {
    "unsafe-serializer",
    "amqp-queue-ignores-priority",
    "redis-priority-default-steps",
    "amqp-heartbeat-off",  # broker_heartbeat = 60
}
