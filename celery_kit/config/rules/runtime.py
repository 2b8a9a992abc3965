"""Rules on how workers run: eager mode, concurrency, connection keep-alive and retry."""

from __future__ import annotations

from collections.abc import Iterator

from celery_kit.config.celery_keys import CeleryKeys as K
from celery_kit.config.rules.facts import ev
from celery_kit.config.rules.model import Hit, Rule, Scope, Severity, Subject

__all__ = ["RUNTIME_RULES"]

_CONF = "https://docs.celeryq.dev/en/stable/userguide/configuration.html"


def _eager(subject: Subject) -> Iterator[Hit]:
    if subject.get(K.task_always_eager):
        yield (
            "task_always_eager is on: .delay() runs the task inline in the caller (the web"
            " request), with no broker, no retries across processes and no time limits",
            (ev(subject, K.task_always_eager),),
            None,
        )


def _concurrency(subject: Subject) -> Iterator[Hit]:
    pool = str(subject.get(K.worker_pool) or "prefork")
    if subject.get(K.worker_concurrency) is None and pool == "prefork":
        yield (
            "worker_concurrency is unset: each worker forks one process per CPU it sees; in a"
            " container that is often the host's CPU count, far above its memory limit",
            (ev(subject, K.worker_concurrency),),
            None,
        )


def _heartbeat(subject: Subject) -> Iterator[Hit]:
    if subject.uses_amqp and not subject.get(K.broker_heartbeat):
        yield (
            "AMQP heartbeats are off: a connection silently dropped by a load balancer or NAT"
            " is never noticed, and the worker stops receiving tasks",
            (ev(subject, K.broker_heartbeat),),
            None,
        )


def _connection_retry(subject: Subject) -> Iterator[Hit]:
    if subject.get(K.broker_connection_retry) is False:
        yield (
            "broker_connection_retry is off: after a broker restart or network blip the"
            " worker does not reconnect",
            (ev(subject, K.broker_connection_retry),),
            None,
        )


RUNTIME_RULES: tuple[Rule, ...] = (
    Rule(
        "always-eager",
        Severity.WARNING,
        "Tasks run eagerly (task_always_eager)",
        "Eager mode is for tests: tasks run synchronously in the caller, so nothing is"
        " queued, retries and time limits do not apply, and a slow task blocks the request.",
        f"{_CONF}#task-always-eager",
        "task_always_eager = False outside tests (use a real broker, or pytest fixtures)",
        "the same: leave task_always_eager unset; tests use celery_kit.testing workers",
        Scope.SETTINGS,
        _eager,
    ),
    Rule(
        "concurrency-from-cpu-count",
        Severity.INFO,
        "Worker concurrency left to the CPU count",
        "Without worker_concurrency a prefork worker starts os.cpu_count() processes; in a"
        " container that is usually the host's CPUs, not the container's limit.",
        f"{_CONF}#worker-concurrency",
        "worker_concurrency = N (or celery worker -c N) sized to the container",
        "concurrency in the [workers.*] profile (celery -A proj kit workers)",
        Scope.SETTINGS,
        _concurrency,
    ),
    Rule(
        "amqp-heartbeat-off",
        Severity.WARNING,
        "AMQP heartbeats disabled",
        "Without heartbeats neither side notices a half-open TCP connection, a classic"
        " cause of workers that are up but receive nothing.",
        f"{_CONF}#broker-heartbeat",
        "broker_heartbeat = 30 (or Celery's default 120; never 0)",
        "nothing: the kit sets broker.heartbeat_s = 30",
        Scope.SETTINGS,
        _heartbeat,
    ),
    Rule(
        "broker-connection-retry-off",
        Severity.WARNING,
        "Workers do not reconnect to the broker",
        "With broker_connection_retry off, a lost broker connection ends consumption for"
        " good; the process may stay up, consuming nothing.",
        f"{_CONF}#broker-connection-retry",
        "broker_connection_retry = True (the default)",
        "nothing: the kit keeps Celery's default",
        Scope.SETTINGS,
        _connection_retry,
    ),
)
