"""Rules on acknowledgement, time limits and the broker's redelivery window."""

from __future__ import annotations

from collections.abc import Iterator

from celery_kit.config.celery_keys import CeleryKeys as K
from celery_kit.config.rules.facts import (
    annotation_limits,
    ev,
    has_redelivery_window,
    late_acked,
    redelivery_window,
    seconds,
    task_ev,
)
from celery_kit.config.rules.model import Hit, Rule, Scope, Severity, Subject

__all__ = ["DELIVERY_RULES"]

_CONF = "https://docs.celeryq.dev/en/stable/userguide/configuration.html"


def _reject_on_worker_lost(subject: Subject) -> Iterator[Hit]:
    if subject.get(K.task_acks_late) and subject.get(K.task_reject_on_worker_lost) is not True:
        yield (
            "task_acks_late is on but task_reject_on_worker_lost is not: a task whose pool"
            " process dies (OOM kill, SIGKILL) is acknowledged anyway, i.e. lost",
            (ev(subject, K.task_acks_late), ev(subject, K.task_reject_on_worker_lost)),
            None,
        )
    for task in subject.tasks or ():
        if task.acks_late and task.reject_on_worker_lost is not True:
            if subject.get(K.task_acks_late) and task.reject_on_worker_lost is None:
                continue  # reported once for the app setting above
            yield (
                f"task {task.name!r} acks late without reject_on_worker_lost",
                (task_ev(task, "acks_late", True),),
                task.name,
            )


def _early_ack(subject: Subject) -> Iterator[Hit]:
    if subject.get(K.task_acks_late):
        return
    tasks = subject.tasks
    early = [t.name for t in tasks or () if not t.acks_late]
    if tasks is not None and not early:
        return
    detail = f" ({len(early)} of {len(tasks)} tasks)" if tasks else ""
    yield (
        f"messages are acknowledged before the task runs{detail}: a worker that crashes or"
        " is killed mid-task loses the task",
        (ev(subject, K.task_acks_late),),
        None,
    )


def _hard_limits(subject: Subject) -> Iterator[tuple[str, float, str, str | None]]:
    """``(label, seconds, origin, task)`` for every hard limit that applies to late-acked work."""
    if not late_acked(subject):
        return
    hard = seconds(subject.get(K.task_time_limit))
    if hard is not None and subject.get(K.task_acks_late):
        yield K.task_time_limit, hard, subject.origin(K.task_time_limit), None
    for name, _soft, limit in annotation_limits(subject):
        if limit is not None:
            yield f"task_annotations[{name}].time_limit", limit, K.task_annotations, name
    for task in subject.tasks or ():
        own = task.time_limit
        if task.acks_late and own is not None and own != hard:
            yield f"task {task.name}.time_limit", own, task.location or "task option", task.name


def _limit_beyond_window(subject: Subject) -> Iterator[Hit]:
    if not has_redelivery_window(subject):
        return
    window, window_ev = redelivery_window(subject)
    prefetch, extra = subject.prefetch, subject.extra_unacked_s
    for label, limit, origin, task in _hard_limits(subject):
        required = limit * prefetch + extra
        if required <= window:
            continue
        what = (
            "Redis hands it to a second worker"
            if subject.uses_redis
            else "RabbitMQ closes the channel and requeues it"
        )
        kit_hint = ""
        if subject.kit and task is not None:
            kit_hint = (
                f'; set tasks.limits."{task}".time_limit_s = {limit:g} in the config so the'
                " visibility timeout is derived from it"
            )
        arithmetic = f"{limit:g} s x prefetch {prefetch}" + (f" + {extra:g} s" if extra else "")
        yield (
            f"{label} = {limit:g} s ({origin}): a late-acked message may stay unacknowledged"
            f" {arithmetic} = {required:g} s, longer than the redelivery window"
            f" ({window:g} s), and {what} while the first still runs it{kit_hint}",
            (window_ev, ev(subject, K.worker_prefetch_multiplier)),
            task,
        )


def _delay_beyond_window(subject: Subject) -> Iterator[Hit]:
    if not has_redelivery_window(subject):
        return
    window, window_ev = redelivery_window(subject)
    for task in subject.tasks or ():
        if not task.autoretry_for and "countdown" not in task.retry_kwargs:
            continue
        countdown = seconds(task.retry_kwargs.get("countdown"))
        delay = countdown if countdown is not None else task.default_retry_delay
        if task.retry_backoff and task.autoretry_for:
            delay = task.retry_backoff_max
        if delay >= window:
            yield (
                f"task {task.name!r} retries after up to {delay:g} s, not below the"
                f" redelivery window ({window:g} s): the worker holds the delayed retry"
                " unacknowledged, so the broker redelivers it, again and again",
                (window_ev, task_ev(task, "retry delay", delay)),
                task.name,
            )


def _unbounded(subject: Subject) -> Iterator[Hit]:
    if not has_redelivery_window(subject) or not late_acked(subject):
        return
    window, window_ev = redelivery_window(subject)
    if subject.get(K.task_acks_late) and seconds(subject.get(K.task_time_limit)) is None:
        annotated = {name for name, _s, hard in annotation_limits(subject) if hard is not None}
        tasks = subject.tasks
        open_ended = [
            t.name for t in tasks or () if t.time_limit is None and t.name not in annotated
        ]
        if tasks is not None and not open_ended:
            return
        yield (
            f"late-acked tasks have no hard time limit: one that runs past the redelivery"
            f" window ({window:g} s) is delivered again while it still runs; so is any"
            " countdown/ETA longer than the window",
            (ev(subject, K.task_time_limit), window_ev),
            None,
        )


def _cancel_on_loss(subject: Subject) -> Iterator[Hit]:
    if late_acked(subject) and not subject.get(
        K.worker_cancel_long_running_tasks_on_connection_loss
    ):
        yield (
            "after a broker reconnect the broker redelivers unacknowledged (late-ack) tasks"
            " while this worker keeps running them: the task runs twice at once",
            (ev(subject, K.worker_cancel_long_running_tasks_on_connection_loss),),
            None,
        )


DELIVERY_RULES: tuple[Rule, ...] = (
    Rule(
        "late-ack-without-reject-on-worker-lost",
        Severity.ERROR,
        "Late ack without reject-on-worker-lost",
        "With acks_late, Celery still acknowledges a task whose pool process was killed"
        " (OOM killer, SIGKILL), so the crash that acks_late was meant to survive loses it.",
        f"{_CONF}#task-reject-on-worker-lost",
        "task_reject_on_worker_lost = True (cap redeliveries of poison messages yourself)",
        "nothing: the kit sets it (tasks.reject_on_worker_lost = true) and caps redeliveries",
        Scope.SETTINGS,
        _reject_on_worker_lost,
    ),
    Rule(
        "early-ack",
        Severity.WARNING,
        "Tasks acknowledged before they run",
        "With the default early ack a message is removed from the broker when a worker"
        " starts it; a crash, deploy kill or OOM mid-task loses the task.",
        "https://docs.celeryq.dev/en/stable/faq.html#faq-acks-late-vs-retry",
        "task_acks_late = True with task_reject_on_worker_lost = True, and idempotent tasks",
        "nothing: the kit acks late by default (tasks.acks_late = true)",
        Scope.SETTINGS,
        _early_ack,
    ),
    Rule(
        "time-limit-beyond-redelivery-window",
        Severity.ERROR,
        "Hard time limit not below the visibility timeout / consumer_timeout",
        "A late-acked task stays unacknowledged while it runs; past Redis' visibility_timeout"
        " the message is given to another worker, past RabbitMQ's consumer_timeout the"
        " channel is closed and the message requeued: the task runs twice.",
        "https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html"
        "#visibility-timeout",
        "raise broker_transport_options['visibility_timeout'] (Redis) or consumer_timeout"
        " (rabbitmq.conf) above the longest hard limit x prefetch, or lower the limits",
        "declare per-task limits in [tasks.limits] so the kit derives the visibility timeout",
        Scope.SETTINGS,
        _limit_beyond_window,
    ),
    Rule(
        "retry-delay-beyond-redelivery-window",
        Severity.ERROR,
        "Retry delay not below the visibility timeout / consumer_timeout",
        "A retry with a countdown is a new message the worker holds unacknowledged until it"
        " is due; a delay past the redelivery window makes the broker deliver it again, in"
        " a loop.",
        "https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html"
        "#visibility-timeout",
        "retry_backoff_max / default_retry_delay below the visibility timeout, or raise it",
        "use RetryingTask: retry.backoff_max_s feeds the derived visibility timeout",
        Scope.TASKS,
        _delay_beyond_window,
    ),
    Rule(
        "late-ack-without-time-limit",
        Severity.WARNING,
        "Late-acked tasks without a hard time limit",
        "Nothing bounds how long a late-acked task holds its message, so one that runs past"
        " the redelivery window (Redis default 1 h) or any countdown/ETA longer than it is"
        " delivered again while the first is still pending.",
        "https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html"
        "#visibility-timeout",
        "task_time_limit (and task_soft_time_limit below it) under the visibility timeout",
        "nothing: the kit sets tasks.time_limit_s = 600 and derives the visibility timeout",
        Scope.SETTINGS,
        _unbounded,
    ),
    Rule(
        "no-cancel-on-connection-loss",
        Severity.WARNING,
        "Running late-ack tasks kept after a broker reconnect",
        "When the broker connection drops, unacknowledged deliveries go back to the queue"
        " and another worker starts them while this one is still running them.",
        f"{_CONF}#worker-cancel-long-running-tasks-on-connection-loss",
        "worker_cancel_long_running_tasks_on_connection_loss = True (Celery 6 default)",
        "nothing: the kit sets it (worker.cancel_long_running_tasks_on_connection_loss)",
        Scope.SETTINGS,
        _cancel_on_loss,
    ),
)
