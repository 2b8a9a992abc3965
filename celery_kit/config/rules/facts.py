"""Derived facts the rules share: effective limits, the redelivery window, priorities in use."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from celery_kit.config.celery_keys import CeleryKeys as K
from celery_kit.config.defaults import KIT_TRANSPORT
from celery_kit.config.rules.model import Evidence, Subject, TaskInfo

__all__ = [
    "RABBITMQ_CONSUMER_TIMEOUT_S",
    "REDIS_VISIBILITY_TIMEOUT_S",
    "annotation_limits",
    "ev",
    "late_acked",
    "priorities_in_use",
    "redelivery_window",
    "renews_held_messages",
    "seconds",
]

#: kombu's Redis transport default ``visibility_timeout`` (kombu/transport/redis.py).
REDIS_VISIBILITY_TIMEOUT_S = 3600.0
#: RabbitMQ's default ``consumer_timeout`` (30 min since 3.8.15).
RABBITMQ_CONSUMER_TIMEOUT_S = 1800.0


def seconds(value: Any) -> float | None:
    """A number of seconds from a number or ``timedelta`` (``None`` when unset/invalid)."""
    if value is None or isinstance(value, bool):
        return None
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def ev(subject: Subject, key: str) -> Evidence:
    """Evidence for Celery setting ``key``."""
    return Evidence(key, subject.get(key), subject.origin(key))


def task_ev(task: TaskInfo, attribute: str, value: Any) -> Evidence:
    """Evidence for one attribute of a task."""
    return Evidence(f"task {task.name}.{attribute}", value, task.location or "task option")


def annotation_limits(subject: Subject) -> Iterator[tuple[str, float | None, float | None]]:
    """``(task name, soft, hard)`` from ``task_annotations`` given as a dict of dicts."""
    annotations = subject.get(K.task_annotations)
    items = annotations if isinstance(annotations, (list, tuple)) else [annotations]
    for item in items:
        if not isinstance(item, Mapping):
            continue
        for name, options in item.items():
            if isinstance(options, Mapping):
                yield (
                    str(name),
                    seconds(options.get("soft_time_limit")),
                    seconds(options.get("time_limit")),
                )


def late_acked(subject: Subject) -> bool:
    """Some work is acknowledged late (the app setting, or any task)."""
    if subject.get(K.task_acks_late):
        return True
    return any(t.acks_late for t in subject.tasks or ())


def redelivery_window(subject: Subject) -> tuple[float, Evidence]:
    """How long a delivery may stay unacknowledged before the broker hands it out again.

    Redis: the transport's ``visibility_timeout``. RabbitMQ: the server's
    ``consumer_timeout`` (the subject carries a value read live, else the default).
    """
    if subject.uses_redis:
        options = subject.get(K.broker_transport_options) or {}
        given = seconds(options.get("visibility_timeout")) if isinstance(options, dict) else None
        value = given if given is not None else REDIS_VISIBILITY_TIMEOUT_S
        origin = (
            subject.origin(K.broker_transport_options)
            if given is not None
            else "kombu default (Redis transport)"
        )
        return value, Evidence("broker_transport_options.visibility_timeout", value, origin)
    given = seconds(subject.get("consumer_timeout"))
    value = given if given is not None else RABBITMQ_CONSUMER_TIMEOUT_S
    origin = subject.origin("consumer_timeout") if given is not None else "assumed RabbitMQ default"
    return value, Evidence("rabbitmq consumer_timeout", value, origin)


def renews_held_messages(subject: Subject) -> bool:
    """The kit's Redis transport renews every message a worker holds (prefetched, waiting
    for its ETA, running): no time limit or delay has to fit its visibility timeout."""
    return subject.uses_redis and subject.get(K.broker_transport) == KIT_TRANSPORT


def has_redelivery_window(subject: Subject) -> bool:
    """The broker redelivers (or drops the channel of) a long-unacked delivery."""
    return (subject.uses_redis and not renews_held_messages(subject)) or subject.uses_amqp


def priorities_in_use(subject: Subject) -> list[Evidence]:
    """Evidence that the app publishes with priorities (empty when it does not)."""
    found = [
        ev(subject, key)
        for key in (K.task_default_priority, K.task_queue_max_priority)
        if subject.get(key) is not None
    ]
    found += [
        Evidence(f"task_queues[{name}].x-max-priority", args["x-max-priority"], K.task_queues)
        for name, args in subject.queue_arguments.items()
        if args.get("x-max-priority") is not None
    ]
    found += [
        Evidence(f"task {t.name}.priority", t.routing_attributes["priority"], t.location)
        for t in subject.tasks or ()
        if t.routing_attributes.get("priority") is not None
    ]
    return found
