"""Rules one by one on small subjects: each fires on its trap and stays quiet on the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from celery_kit.config.rules import Subject, TaskInfo, evaluate, rule_by_id, static_rules
from celery_kit.doctor.docs import doctor_markdown
from celery_kit.doctor.live_rules import LIVE_RULES

ROOT = Path(__file__).parents[3]


def ids(conf: dict[str, Any], tasks: tuple[TaskInfo, ...] | None = None, **kw: Any) -> set[str]:
    return {f.rule.id for f in evaluate(Subject(conf=conf, tasks=tasks, **kw))}


def test_rule_ids_are_unique_and_every_rule_cites_a_source() -> None:
    rules = static_rules() + LIVE_RULES
    assert len({r.id for r in rules}) == len(rules)
    for rule in rules:
        assert rule.source.startswith("https://"), rule.id
        assert all((rule.why, rule.fix_celery, rule.fix_kit)), rule.id
    with pytest.raises(KeyError):
        rule_by_id("no-such-rule")


def test_docs_doctor_md_is_generated_from_the_rules() -> None:
    text = (ROOT / "docs" / "doctor.md").read_text()
    assert text == doctor_markdown(), "run: python -m celery_kit.doctor.docs > docs/doctor.md"
    for rule in static_rules() + LIVE_RULES:
        assert f"### `{rule.id}` ({rule.severity.value})" in text


REDIS = {"broker_url": "redis://h/0", "task_acks_late": True, "task_reject_on_worker_lost": True}


def test_time_limit_against_the_visibility_timeout() -> None:
    base = {**REDIS, "worker_prefetch_multiplier": 1, "task_time_limit": 600}
    assert "time-limit-beyond-redelivery-window" not in ids(base)
    assert "time-limit-beyond-redelivery-window" in ids({**base, "task_time_limit": 7200})
    # prefetch: four messages wait behind a 1000 s task
    assert "time-limit-beyond-redelivery-window" in ids(
        {**base, "task_time_limit": 1000, "worker_prefetch_multiplier": 4}
    )
    raised = {
        **base,
        "task_time_limit": 7200,
        "broker_transport_options": {"visibility_timeout": 9000},
    }
    assert "time-limit-beyond-redelivery-window" not in ids(raised)
    # early ack: nothing stays unacknowledged while running
    assert "time-limit-beyond-redelivery-window" not in ids({**base, "task_acks_late": False})


def test_per_task_limits_and_rabbitmq_consumer_timeout() -> None:
    conf = {"broker_url": "amqp://h//", "worker_prefetch_multiplier": 1}
    slow = TaskInfo("t.slow", acks_late=True, reject_on_worker_lost=True, time_limit=2400)
    found = evaluate(Subject(conf=conf, tasks=(slow,)))
    limit = [f for f in found if f.rule.id == "time-limit-beyond-redelivery-window"]
    assert limit
    assert limit[0].task == "t.slow"
    assert limit[0].evidence[0].origin == "assumed RabbitMQ default"
    read = {**conf, "consumer_timeout": 3600}
    assert "time-limit-beyond-redelivery-window" not in ids(read, (slow,))


def test_late_ack_per_task_without_reject() -> None:
    task = TaskInfo("t.x", acks_late=True, reject_on_worker_lost=None)
    assert "late-ack-without-reject-on-worker-lost" in ids({"broker_url": "redis://h"}, (task,))
    ok = TaskInfo("t.x", acks_late=True, reject_on_worker_lost=True)
    assert "late-ack-without-reject-on-worker-lost" not in ids({"broker_url": "redis://h"}, (ok,))


def test_retry_delay_beyond_the_window() -> None:
    conf = {**REDIS, "broker_transport_options": {"visibility_timeout": 300}}
    backoff = TaskInfo("t.r", autoretry_for=("Exception",), retry_backoff=True)
    assert "retry-delay-beyond-redelivery-window" in ids(conf, (backoff,))  # 600 s cap
    short = TaskInfo("t.r", autoretry_for=("IOError",), retry_backoff=True, retry_backoff_max=60)
    assert "retry-delay-beyond-redelivery-window" not in ids(conf, (short,))


def test_priorities_on_rabbitmq_queues() -> None:
    conf = {"broker_url": "amqp://h//", "task_default_priority": 5}
    plain = ids(conf, queue_arguments={"q": {}})
    assert "amqp-queue-ignores-priority" in plain
    assert "amqp-queue-ignores-priority" not in ids(
        conf, queue_arguments={"q": {"x-max-priority": 10}}
    )
    quorum = evaluate(
        Subject(conf=conf, queue_arguments={"q": {"x-queue-type": "quorum", "x-max-priority": 10}})
    )
    assert any("quorum" in f.message for f in quorum)


def test_redis_priority_steps_and_prefetch() -> None:
    conf = {"broker_url": "redis://h", "task_default_priority": 3, "worker_prefetch_multiplier": 1}
    assert "redis-priority-default-steps" in ids(conf)
    steps = {**conf, "broker_transport_options": {"priority_steps": list(range(10))}}
    assert "redis-priority-default-steps" not in ids(steps)
    assert "prefetch-with-long-tasks" in ids({**conf, "worker_prefetch_multiplier": 4})
    short = {"broker_url": "redis://h", "worker_prefetch_multiplier": 4, "task_time_limit": 30}
    assert "prefetch-with-long-tasks" not in ids(short)
    assert "prefetch-with-long-tasks" in ids({**short, "worker_prefetch_multiplier": 0})


def test_undeclared_queues_and_missing_queue_creation() -> None:
    conf = {"broker_url": "redis://h", "task_create_missing_queues": True}
    args = {"default": {}}
    assert "undeclared-queue" in ids(
        conf, (), queue_arguments=args, routed_queues=frozenset({"typo"})
    )
    assert "undeclared-queue" not in ids(
        conf, (), queue_arguments=args, routed_queues=frozenset({"default"})
    )


def test_task_routing_attributes_from_a_real_celery_app() -> None:
    from celery_kit.doctor.subject import subject_of

    app = Celery("attrs", broker="redis://h:1/0", set_as_current=False)
    app.conf.task_default_priority = 4

    @app.task(shared=False, name="t.routed", queue="q", routing_key="r")
    def routed() -> None: ...

    @app.task(shared=False, name="t.plain")
    def plain() -> None: ...

    found = [f for f in evaluate(subject_of(app)) if f.rule.id == "task-routing-attribute"]
    assert [f.task for f in found] == ["t.routed"]
    assert "queue='q'" in found[0].message
    assert "routing_key='r'" in found[0].message


def test_uncapped_broad_autoretry() -> None:
    forever = TaskInfo("t.f", autoretry_for=("Exception",), max_retries=None, retry_backoff=True)
    assert "broad-autoretry" in ids({}, (forever,))
    capped = TaskInfo("t.f", autoretry_for=("Exception",), max_retries=5, retry_backoff=True)
    assert "broad-autoretry" not in ids({}, (capped,))
    narrow = TaskInfo("t.f", autoretry_for=("requests.ConnectionError",), max_retries=None)
    assert "broad-autoretry" not in ids({}, (narrow,))


def test_task_rules_wait_for_tasks() -> None:
    forever = {"broker_url": "redis://h"}
    assert "broad-autoretry" not in ids(forever, None)  # task modules not imported


def test_runtime_rules() -> None:
    assert "always-eager" in ids({"task_always_eager": True})
    assert "always-eager" not in ids({"task_always_eager": False})
    amqp = {"broker_url": "amqp://h//", "broker_heartbeat": 0}
    assert "amqp-heartbeat-off" in ids(amqp)
    assert "amqp-heartbeat-off" not in ids({**amqp, "broker_heartbeat": 30})
    assert "broker-connection-retry-off" in ids({"broker_connection_retry": False})
    assert "concurrency-from-cpu-count" not in ids({"worker_concurrency": 4})
    assert "concurrency-from-cpu-count" not in ids({"worker_pool": "threads"})


def test_kit_apps_keep_queue_and_priority_task_attributes() -> None:
    task = TaskInfo("t.q", routing_attributes={"queue": "critical", "routing_key": "x"})
    plain = evaluate(Subject(conf={}, tasks=(task,)))
    kit = evaluate(Subject(conf={}, tasks=(task,), kit=True))
    assert next(f.message for f in plain if f.rule.id == "task-routing-attribute").count("=") == 2
    kit_msgs = [f.message for f in kit if f.rule.id == "task-routing-attribute"]
    assert kit_msgs == [
        "task 't.q' sets routing_key='x' on the task; Celery 6 ignores these"
        " attributes and the task would silently go to the default queue"
    ]


def test_celery_keys_are_checked_against_celerys_own_list() -> None:
    from celery_kit.config.celery_keys import CeleryKeys

    assert CeleryKeys.task_acks_late == "task_acks_late"
    with pytest.raises(AttributeError, match="not a Celery setting"):
        _ = CeleryKeys.task_ack_late


def test_self_retry_in_a_task_that_is_not_bound() -> None:
    from celery_kit.doctor.subject import subject_of

    app = Celery("bind", broker="redis://h:1/0", set_as_current=False)

    @app.task(shared=False, name="t.unbound")
    def unbound(self, order_id):  # type: ignore[no-untyped-def]
        try:
            return order_id
        except OSError as exc:
            raise self.retry(exc=exc) from exc

    @app.task(shared=False, name="t.bound", bind=True)
    def bound(self, order_id):  # type: ignore[no-untyped-def]
        raise self.retry(countdown=1)

    @app.task(shared=False, name="t.other")
    def other(client):  # type: ignore[no-untyped-def]
        return client.fetch()

    found = [f.task for f in evaluate(subject_of(app)) if f.rule.id == "retry-without-bind"]
    assert found == ["t.unbound"]
