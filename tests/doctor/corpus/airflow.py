"""Modelled on Airflow's CeleryExecutor defaults.

apache/airflow, providers/celery/src/airflow/providers/celery/executors/default_celery.py
(DEFAULT_CELERY_CONFIG): late ack, prefetch 1, a six-hour visibility timeout on Redis,
results in a database, no time limits and no reject-on-worker-lost.
"""

from celery import Celery

app = Celery("airflow_like", set_as_current=False)
app.conf.update(
    accept_content=["json"],
    event_serializer="json",
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    task_default_queue="default",
    task_default_exchange="default",
    task_track_started=True,
    broker_url="redis://redis:6379/0",
    broker_transport_options={"visibility_timeout": 21600},
    result_backend="db+postgresql://airflow:airflow-pw@postgres/airflow",
    database_engine_options={},
    worker_concurrency=16,
    worker_enable_remote_control=True,
)


@app.task(shared=False, name="execute_command")
def execute_command(command_to_exec: list[str]) -> None: ...


MUST = {
    "late-ack-without-reject-on-worker-lost",
    "late-ack-without-time-limit",
    "no-cancel-on-connection-loss",
    "no-time-limit",
}
MUST_NOT = {
    "early-ack",
    "prefetch-with-long-tasks",
    "time-limit-beyond-redelivery-window",
    "concurrency-from-cpu-count",
}
