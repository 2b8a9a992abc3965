"""Rules on limits, prefetch, serialization, results, worker recycling and start/stop."""

from __future__ import annotations

from collections.abc import Iterator

from celery_kit.config.celery_keys import CeleryKeys as K
from celery_kit.config.rules.facts import (
    annotation_limits,
    ev,
    late_acked,
    priorities_in_use,
    seconds,
)
from celery_kit.config.rules.facts import task_ev as _task_ev
from celery_kit.config.rules.model import Hit, Rule, Scope, Severity, Subject

__all__ = ["HYGIENE_RULES", "UNSAFE_CONTENT"]

_CONF = "https://docs.celeryq.dev/en/stable/userguide/configuration.html"
#: Content types whose decoder can run code or build arbitrary objects.
UNSAFE_CONTENT = frozenset(
    {"pickle", "yaml", "application/x-python-serialize", "application/x-yaml"}
)
#: A hard limit above this counts as a "long task" for the prefetch rule.
_LONG_TASK_S = 60.0


def _no_limits(subject: Subject) -> Iterator[Hit]:
    if seconds(subject.get(K.task_time_limit)) is not None:
        return
    annotated = {name for name, _s, hard in annotation_limits(subject) if hard is not None}
    tasks = subject.tasks
    bare = [t.name for t in tasks or () if t.time_limit is None and t.name not in annotated]
    if tasks is not None and not bare:
        return
    detail = f" ({len(bare)} of {len(tasks)} tasks)" if tasks else ""
    yield (
        f"no hard time limit{detail}: a task stuck on a network call holds its worker slot forever",
        (ev(subject, K.task_time_limit), ev(subject, K.task_soft_time_limit)),
        None,
    )


def _soft_not_below_hard(subject: Subject) -> Iterator[Hit]:
    soft, hard = (
        seconds(subject.get(K.task_soft_time_limit)),
        seconds(subject.get(K.task_time_limit)),
    )
    if soft is not None and hard is not None and soft >= hard:
        hint = f"; set tasks.time_limit_s above {soft:g}" if subject.kit else ""
        yield (
            f"task_soft_time_limit {soft:g} s >= task_time_limit {hard:g} s: the task is killed"
            f" before SoftTimeLimitExceeded can let it clean up{hint}",
            (ev(subject, K.task_soft_time_limit), ev(subject, K.task_time_limit)),
            None,
        )
    for name, a_soft, a_hard in annotation_limits(subject):
        s, h = a_soft if a_soft is not None else soft, a_hard if a_hard is not None else hard
        if s is not None and h is not None and s >= h:
            label = f"tasks.limits.{name}" if subject.kit else f"task_annotations[{name}]"
            yield (
                f"{label}: soft limit {s:g} s must be below hard limit {h:g} s",
                (ev(subject, K.task_annotations),),
                name,
            )
    annotated = {name for name, _s, _h in annotation_limits(subject)}
    for task in subject.tasks or ():
        if task.name in annotated:
            continue  # reported with its annotation above
        if (
            task.soft_time_limit is not None
            and task.time_limit is not None
            and task.soft_time_limit >= task.time_limit
        ):
            yield (
                f"task {task.name!r}: soft_time_limit={task.soft_time_limit:g} must be below"
                f" time_limit={task.time_limit:g}",
                (
                    _task_ev(task, "soft_time_limit", task.soft_time_limit),
                    _task_ev(task, "time_limit", task.time_limit),
                ),
                task.name,
            )


def _prefetch(subject: Subject) -> Iterator[Hit]:
    prefetch = subject.get(K.worker_prefetch_multiplier)
    if prefetch == 1 or subject.get(K.worker_disable_prefetch):
        return
    reasons: list[str] = []
    hard = seconds(subject.get(K.task_time_limit))
    if prefetch == 0:
        reasons.append("0 means unlimited: one worker takes the whole queue")
    if hard is None or hard > _LONG_TASK_S:
        reasons.append(
            "tasks may run long (no hard limit)" if hard is None else f"tasks may run {hard:g} s"
        )
    priorities = priorities_in_use(subject)
    if priorities:
        reasons.append("priorities are in use, and prefetched messages skip the order")
    if reasons:
        yield (
            f"worker_prefetch_multiplier = {prefetch!r}: " + "; ".join(reasons),
            (ev(subject, K.worker_prefetch_multiplier), *priorities[:2]),
            None,
        )


def _unsafe_content(subject: Subject) -> Iterator[Hit]:
    unsafe = subject.unsafe_content or UNSAFE_CONTENT
    for key in (K.task_serializer, K.result_serializer, K.event_serializer):
        value = subject.get(key)
        if str(value).lower() in unsafe:
            yield f"{key} = {value!r}", (ev(subject, key),), None
    for key in (K.accept_content, K.result_accept_content, "event_accept_content"):
        value = subject.get(key) or ()
        bad = sorted(str(v) for v in value if str(v).lower() in unsafe)
        if bad:
            yield f"{key} accepts {', '.join(bad)}", (ev(subject, key),), None


def _backend(subject: Subject) -> str | None:
    backend = subject.get("result_backend")
    return None if backend in (None, "", "disabled") else str(backend)


def _results_forever(subject: Subject) -> Iterator[Hit]:
    if _backend(subject) and not seconds(subject.get(K.result_expires)):
        yield (
            "result_expires is unset: results stay in the backend forever and it grows"
            " without bound",
            (ev(subject, "result_backend"), ev(subject, K.result_expires)),
            None,
        )


def _results_ignored(subject: Subject) -> Iterator[Hit]:
    tasks = subject.tasks
    if not _backend(subject) or not tasks:
        return
    if all(t.ignore_result for t in tasks):
        yield (
            f"a result backend is configured but all {len(tasks)} tasks ignore results",
            (ev(subject, "result_backend"), ev(subject, K.task_ignore_result)),
            None,
        )


def _children(subject: Subject) -> Iterator[Hit]:
    if (
        subject.get(K.worker_max_tasks_per_child) is None
        and subject.get(K.worker_max_memory_per_child) is None
        and subject.get(K.worker_pool, "prefork") == "prefork"
    ):
        yield (
            "pool processes are never recycled: a slow leak in task code grows until the"
            " OOM killer takes the worker (and its running tasks)",
            (ev(subject, K.worker_max_tasks_per_child), ev(subject, K.worker_max_memory_per_child)),
            None,
        )


def _retry_on_startup(subject: Subject) -> Iterator[Hit]:
    if subject.get(K.broker_connection_retry_on_startup) is None:
        yield (
            "broker_connection_retry_on_startup is unset: Celery 5 retries and warns at every"
            " start; Celery 6 changes the behaviour",
            (ev(subject, K.broker_connection_retry_on_startup),),
            None,
        )


def _soft_shutdown(subject: Subject) -> Iterator[Hit]:
    if subject.celery_version < (5, 5) or seconds(subject.get(K.worker_soft_shutdown_timeout)):
        return
    yield (
        "worker_soft_shutdown_timeout = 0: on a cold shutdown (second SIGTERM, SIGQUIT,"
        " Kubernetes after its grace period) running tasks are killed at once"
        + (" and redelivered" if late_acked(subject) else " and lost"),
        (ev(subject, K.worker_soft_shutdown_timeout),),
        None,
    )


def _rule(rid: str, sev: Severity, title: str, why: str, src: str, fc: str, fk: str, check: object,
          scope: Scope = Scope.SETTINGS) -> Rule:  # fmt: skip
    return Rule(rid, sev, title, why, src, fc, fk, scope, check)  # type: ignore[arg-type]


HYGIENE_RULES: tuple[Rule, ...] = (
    _rule(
        "no-time-limit",
        Severity.WARNING,
        "No hard time limit",
        "A task blocked on a network call or a lock never ends and holds its pool slot"
        " forever; enough of them and the worker stops processing anything.",
        f"{_CONF}#task-time-limit",
        "task_time_limit = N and task_soft_time_limit = N - 60 (or per task)",
        "nothing: the kit sets tasks.time_limit_s = 600, tasks.soft_time_limit_s = 540",
        _no_limits,
    ),
    _rule(
        "soft-limit-not-below-hard",
        Severity.WARNING,
        "Soft time limit not below the hard",
        "The soft limit raises SoftTimeLimitExceeded so the task can clean up; at or above"
        " the hard limit the process is killed first and the soft limit never fires.",
        f"{_CONF}#task-soft-time-limit",
        "task_soft_time_limit below task_time_limit (per task too)",
        "tasks.soft_time_limit_s below tasks.time_limit_s (the kit refuses otherwise)",
        _soft_not_below_hard,
    ),
    _rule(
        "prefetch-with-long-tasks",
        Severity.WARNING,
        "Prefetch > 1 with long tasks or priorities",
        "Each worker process reserves prefetch x concurrency messages; long tasks then"
        " hoard work an idle worker could run, and priority order is lost for reserved"
        " messages.",
        "https://docs.celeryq.dev/en/stable/userguide/optimizing.html#prefetch-limits",
        "worker_prefetch_multiplier = 1 (use more only for short bulk tasks)",
        "nothing: the kit sets worker.prefetch_multiplier = 1; raise it per [workers.*]"
        " profile for bulk queues",
        _prefetch,
    ),
    _rule(
        "unsafe-serializer",
        Severity.ERROR,
        "pickle/yaml accepted",
        "A worker that accepts pickle (or yaml) runs code chosen by whoever can publish"
        " to the broker: a broker credential becomes remote code execution.",
        "https://docs.celeryq.dev/en/stable/userguide/security.html#serializers",
        "task_serializer/result_serializer = 'json', accept_content = ['json']",
        "remove pickle from [serialization]; the kit refuses it unless"
        " serialization.allow_unsafe = true",
        _unsafe_content,
    ),
    _rule(
        "results-kept-forever",
        Severity.WARNING,
        "Results never expire",
        "With result_expires unset (or 0) every stored result stays in the backend"
        " forever; Redis fills up and starts evicting or refusing writes.",
        f"{_CONF}#result-expires",
        "result_expires = 86400 (or what your callers need)",
        "nothing: the kit pins tasks.result_expires_s = 86400",
        _results_forever,
    ),
    _rule(
        "results-backend-unused",
        Severity.INFO,
        "Result backend that no task uses",
        "Every task ignores its result, yet a backend is configured: connections and"
        " chord bookkeeping cost without benefit.",
        f"{_CONF}#result-backend",
        "drop result_backend, or stop ignoring results where callers read them",
        "leave result_backend unset and ignore results",
        _results_ignored,
        Scope.TASKS,
    ),
    _rule(
        "no-child-recycling",
        Severity.INFO,
        "Pool processes never recycled",
        "A slow memory leak in task code (or a C extension) grows until the OOM killer"
        " ends the whole worker, with every task it was running.",
        f"{_CONF}#worker-max-tasks-per-child",
        "worker_max_memory_per_child = 512000 (KiB; or worker_max_tasks_per_child)",
        "nothing: the kit sets worker.max_memory_per_child_kb = 512000",
        _children,
    ),
    _rule(
        "connection-retry-on-startup-unset",
        Severity.WARNING,
        "broker_connection_retry_on_startup unset",
        "Celery 5 warns at every start and retries; the setting decides whether a worker"
        " started before its broker waits or exits, and its default changes in Celery 6.",
        f"{_CONF}#broker-connection-retry-on-startup",
        "broker_connection_retry_on_startup = True",
        "nothing: the kit sets broker.connection_retry_on_startup = true",
        _retry_on_startup,
    ),
    _rule(
        "soft-shutdown-off",
        Severity.INFO,
        "Soft shutdown not configured",
        "Since Celery 5.5 a worker can give running tasks a grace period on cold"
        " shutdown; without it they are killed at once when the orchestrator escalates.",
        "https://docs.celeryq.dev/en/stable/userguide/workers.html#soft-shutdown",
        "worker_soft_shutdown_timeout = N seconds (below the orchestrator's grace period)",
        "worker.soft_shutdown_timeout_s = N",
        _soft_shutdown,
    ),
)
