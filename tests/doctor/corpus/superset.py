"""Modelled on Superset's CeleryConfig (apache/superset, superset/config.py).

A SQLAlchemy broker for development, prefetch 1, early ack, and task annotations that
give the report e-mail task a soft limit above its hard one.
"""

from celery import Celery


class CeleryConfig:
    broker_url = "sqla+sqlite:///celerydb.sqlite"
    result_backend = "db+sqlite:///celery_results.sqlite"
    worker_prefetch_multiplier = 1
    task_acks_late = False
    task_annotations = {
        "sql_lab.get_sql_results": {"rate_limit": "100/s"},
        "email_reports.send": {
            "rate_limit": "1/s",
            "time_limit": 120,
            "soft_time_limit": 150,
            "ignore_result": True,
        },
    }


app = Celery("superset_like", set_as_current=False)
app.config_from_object(CeleryConfig)


@app.task(shared=False, name="email_reports.send")
def send(report_id: int) -> None: ...


@app.task(shared=False, name="sql_lab.get_sql_results")
def get_sql_results(query_id: int) -> None: ...


MUST = {"soft-limit-not-below-hard", "early-ack", "no-time-limit", "concurrency-from-cpu-count"}
MUST_NOT = {"unsafe-serializer", "prefetch-with-long-tasks", "redis-priority-default-steps"}
