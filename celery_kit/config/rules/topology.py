"""Rules on queues, routing and priorities."""

from __future__ import annotations

from collections.abc import Iterator

from celery_kit.config.celery_keys import CeleryKeys as K
from celery_kit.config.rules.facts import ev, priorities_in_use
from celery_kit.config.rules.model import Evidence, Hit, Rule, Scope, Severity, Subject

__all__ = ["TOPOLOGY_RULES"]

_ROUTING = "https://docs.celeryq.dev/en/stable/userguide/routing.html"


def _redis_steps(subject: Subject) -> Iterator[Hit]:
    if not subject.uses_redis:
        return
    used = priorities_in_use(subject)
    options = subject.get(K.broker_transport_options) or {}
    if used and "priority_steps" not in options:
        yield (
            "priorities are used on Redis with Celery's default priority_steps [0, 3, 6, 9]:"
            " ten levels collapse into four lists, and on Redis 0 is the MOST urgent (the"
            " reverse of RabbitMQ), so 'priority=9 = urgent' runs last",
            (ev(subject, K.broker_transport_options), *used[:2]),
            None,
        )


def _amqp_priority(subject: Subject) -> Iterator[Hit]:
    if not subject.uses_amqp or not priorities_in_use(subject):
        return
    default_max = subject.get(K.task_queue_max_priority)
    declared = dict(subject.queue_arguments)
    if not declared:
        declared = {str(subject.get(K.task_default_queue) or "celery"): {}}
    default_type = str(subject.get(K.task_default_queue_type) or "classic")
    for name, args in sorted(declared.items()):
        qtype = str(args.get("x-queue-type") or default_type)
        has_max = args.get("x-max-priority") is not None or default_max is not None
        if qtype == "quorum":
            yield (
                f"queue {name!r} is a quorum queue: x-max-priority does not apply there"
                " (4.x knows only two levels: 0-4 normal, 5+ high)",
                (Evidence(f"task_queues[{name}].x-queue-type", qtype, K.task_queues),),
                None,
            )
        elif not has_max:
            yield (
                f"queue {name!r} has no x-max-priority: RabbitMQ ignores message priorities"
                " on it and delivers in FIFO order",
                (ev(subject, K.task_queue_max_priority),),
                None,
            )


def _missing_queues(subject: Subject) -> Iterator[Hit]:
    declared = set(subject.queue_arguments)
    if not declared:
        return  # nothing declared: every queue is created on demand by design
    missing = sorted(subject.routed_queues - declared)
    if not missing:
        return
    create = subject.get(K.task_create_missing_queues, True)
    if create:
        what = "are created on first publish, and no worker started with -Q for the declared"
        what += " queues consumes them: the tasks wait there forever"
    else:
        what = "are not declared and task_create_missing_queues is off: publishing raises"
        what += " QueueNotFound"
    yield (
        f"routes or task attributes name undeclared queues {', '.join(missing)}; they {what}",
        (ev(subject, K.task_create_missing_queues), ev(subject, K.task_queues)),
        None,
    )


#: The kit's router reads these task attributes itself (celery_kit.routing.KitRouter),
#: so on a kit app they keep working whatever Celery does with them.
_KIT_ROUTED = frozenset({"queue", "priority"})


def _removed_attributes(subject: Subject) -> Iterator[Hit]:
    for task in subject.tasks or ():
        attributes = {
            k: v
            for k, v in task.routing_attributes.items()
            if not (subject.kit and k in _KIT_ROUTED)
        }
        if attributes:
            names = ", ".join(f"{k}={v!r}" for k, v in sorted(attributes.items()))
            yield (
                f"task {task.name!r} sets {names} on the task; Celery 6 ignores these"
                " attributes and the task would silently go to the default queue",
                tuple(
                    Evidence(f"task {task.name}.{k}", v, task.location or "task option")
                    for k, v in sorted(attributes.items())
                ),
                task.name,
            )


TOPOLOGY_RULES: tuple[Rule, ...] = (
    Rule(
        "redis-priority-default-steps",
        Severity.WARNING,
        "Redis priorities with Celery's default steps",
        "Redis emulates priorities with one list per step; the default steps [0, 3, 6, 9]"
        " merge levels, and lower numbers are served first, the opposite of RabbitMQ.",
        f"{_ROUTING}#redis-message-priorities",
        "broker_transport_options = {'priority_steps': list(range(10)), 'sep': ':',"
        " 'queue_order_strategy': 'priority'} and treat 0 as most urgent",
        "nothing: the kit sets the steps and translates its 0-9 scale (9 = most urgent)",
        Scope.SETTINGS,
        _redis_steps,
    ),
    Rule(
        "amqp-queue-ignores-priority",
        Severity.WARNING,
        "Priority on a RabbitMQ queue that cannot honour it",
        "RabbitMQ orders by priority only on classic queues declared with x-max-priority;"
        " elsewhere (no argument, or a quorum queue) priorities are silently ignored.",
        "https://www.rabbitmq.com/docs/priority",
        "declare the queue with queue_arguments={'x-max-priority': 10} (or set"
        " task_queue_max_priority) on a classic queue",
        "declare the queue in [queues] with max_priority (classic queues only)",
        Scope.SETTINGS,
        _amqp_priority,
    ),
    Rule(
        "undeclared-queue",
        Severity.WARNING,
        "Tasks routed to queues that are not declared",
        "With task_create_missing_queues (Celery's default) a typo in a queue name creates"
        " a new queue that no worker consumes; without it publishing fails.",
        f"{_ROUTING}#automatic-routing",
        "declare every queue in task_queues and set task_create_missing_queues = False",
        "declare the queue in [queues] (the kit turns task_create_missing_queues off)",
        Scope.TASKS,
        _missing_queues,
    ),
    Rule(
        "task-routing-attribute",
        Severity.WARNING,
        "queue/exchange/routing_key/priority set on the task (Celery 6 ignores them)",
        "Celery 5.x warns that the queue, exchange, exchange_type, routing_key,"
        " delivery_mode and priority task attributes will have no effect in 6.0; tasks"
        " would move to the default queue on upgrade.",
        "https://github.com/celery/celery/blob/main/celery/app/task.py (Task.bind)",
        "move the routing to task_routes = {'proj.tasks.name': {'queue': ...}}",
        "queue= and priority= keep working on kit apps (the kit's router reads them);"
        " move exchange/routing_key routing to [routes]",
        Scope.TASKS,
        _removed_attributes,
    ),
)
