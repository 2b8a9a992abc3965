"""Settings → Celery configuration: with ``defaults.py``, the one place that names Celery keys.

``build_conf`` emits every Celery key the kit sets with the origin of its value, applies
``celery_overrides`` last, derives the redelivery budget (Redis visibility timeout or
RabbitMQ ``consumer_timeout`` check) from the *effective* values, and enforces the
cross-field rules on them, so an override cannot slip an unsafe value past the checks.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

from celery_kit.config import defaults as d
from celery_kit.config.entries import ConfEntry, RedeliveryBudget
from celery_kit.config.overrides import apply_overrides
from celery_kit.config.redelivery import budget_of, derive_redelivery
from celery_kit.config.router import KitRouter
from celery_kit.config.rules import evaluate
from celery_kit.config.rules.celery_view import kit_subject
from celery_kit.config.schedules import beat_problems, beat_redis_url, celery_beat_schedule
from celery_kit.config.sources import Origin, OriginKind
from celery_kit.config.topology import (
    check_topology,
    declared_queues,
    kombu_queues,
    redis_priority_options,
)
from celery_kit.exceptions import ConfigError

if TYPE_CHECKING:
    from celery_kit.config.settings import Settings

__all__ = [
    "ConfEntry",
    "RedeliveryBudget",
    "build_conf",
    "redelivery_budget",
]

_DEFAULT = Origin(OriginKind.DEFAULT)
_DERIVED = Origin(OriginKind.DERIVED)


def _get(settings: Settings, path: str) -> Any:
    return operator.attrgetter(path)(settings)


def build_conf(settings: Settings) -> dict[str, ConfEntry]:
    """Build and check the Celery configuration ``settings`` stands for.

    Raises:
        ConfigError: an override names an unknown key, or the effective values are unsafe.
    """
    conf: dict[str, ConfEntry] = {}

    def put(key: str, value: Any, source: str, origin: Origin | None = None) -> None:
        conf[key] = ConfEntry(value, origin or settings.origin_of(source) or _DEFAULT, source)

    for default in d.SAFE_DEFAULTS:
        if default.setting is None:
            put(default.key, default.value, f"defaults.{default.key}", _DEFAULT)
        else:
            put(default.key, _get(settings, default.setting), default.setting)
    put("broker_url", settings.broker_url, "broker_url")
    if settings.result_backend is not None:
        put("result_backend", settings.result_backend, "result_backend")
    elif settings.is_redis_broker:
        put("result_backend", settings.broker_url.split(";")[0], "result_backend", _DERIVED)
    if settings.worker.max_tasks_per_child is not None:
        put(
            "worker_max_tasks_per_child",
            settings.worker.max_tasks_per_child,
            "worker.max_tasks_per_child",
        )
    if settings.tasks.limits:
        put("task_annotations", _annotations(settings), "tasks.limits")
    if settings.worker.soft_shutdown_timeout_s is not None:
        put(
            "worker_soft_shutdown_timeout",
            settings.worker.soft_shutdown_timeout_s,
            "worker.soft_shutdown_timeout_s",
        )
    if settings.flower.task_events:
        # Flower's tasks page: workers send task-received/started/succeeded..., publishers
        # send task-sent (no remote-control command can turn that one on). docs/flower.md
        put("worker_send_task_events", True, "flower.task_events")
        put("task_send_sent_event", True, "flower.task_events")
    transport = dict(settings.broker.transport_options)
    if settings.is_redis_broker:
        transport = redis_priority_options(transport)
    put("broker_transport_options", transport, "broker.transport_options")

    _derive_beat(settings, conf)
    # every problem is reported at once: an override typo must not hide an unsafe value
    problems = apply_overrides(settings, conf)
    _derive_topology(settings, conf)
    try:
        derive_redelivery(settings, conf)
    except ConfigError as exc:
        problems.append(str(exc))
    problems += _check(settings, conf)
    if problems:
        raise ConfigError("invalid settings:\n  - " + "\n  - ".join(problems))
    return conf


def _annotations(settings: Settings) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, limits in settings.tasks.limits.items():
        item: dict[str, float] = {}
        if limits.soft_time_limit_s is not None:
            item["soft_time_limit"] = limits.soft_time_limit_s
        if limits.time_limit_s is not None:
            item["time_limit"] = limits.time_limit_s
        out[name] = item
    return out


def _derive_beat(settings: Settings, conf: dict[str, ConfEntry]) -> None:
    """RedBeat as the one scheduler (docs/beat.md): Redis, key layout, lock, entries."""
    beat = settings.beat
    url = beat_redis_url(settings)
    if not beat.active or url is None:
        return  # no Redis: refused with the fix by _check (beat_problems)
    prefix = f"{settings.redis.key_prefix}:beat:"
    derived: dict[str, tuple[Any, str]] = {
        "beat_scheduler": ("celery_kit.beat.scheduler:KitScheduler", "beat.enabled"),
        "beat_max_loop_interval": (beat.max_loop_interval_s, "beat.max_loop_interval_s"),
        "beat_schedule": (celery_beat_schedule(settings), "beat.schedule"),
        # explicit, so RedBeat neither falls back to the broker (deprecated) nor passes the
        # kit's broker transport options to its client
        "redbeat_redis_url": (url, "redis.url"),
        "redbeat_redis_options": (
            {
                "socket_timeout": settings.redis.socket_timeout_s,
                "socket_connect_timeout": settings.redis.socket_timeout_s,
                "health_check_interval": 30,
            },
            "redis.socket_timeout_s",
        ),
        "redbeat_key_prefix": (prefix, "redis.key_prefix"),
        "redbeat_lock_key": (f"{prefix}:lock", "redis.key_prefix"),
        "redbeat_lock_timeout": (beat.effective_lock_timeout_s, "beat.lock_timeout_s"),
    }
    for key, (value, source) in derived.items():
        conf[key] = ConfEntry(value, settings.origin_of(source) or _DERIVED, source)


def _derive_topology(settings: Settings, conf: dict[str, ConfEntry]) -> None:
    """Queues and router from ``queues``/``routes``/``routers`` (unless overridden)."""
    default_queue = str(conf["task_default_queue"].value)
    queues = declared_queues(settings, default_queue)
    derived = {
        "task_queues": (kombu_queues(queues, amqp=settings.is_amqp_broker), "queues"),
        "task_routes": ([KitRouter(settings.routes, hooks=settings.routers)], "routes"),
        #: A queue name nobody declared raises at publish (QueueNotFound) instead of
        #: creating a queue that no worker consumes. Loosen with celery_overrides.
        "task_create_missing_queues": (False, "queues"),
    }
    for key, (value, source) in derived.items():
        if key not in conf:
            conf[key] = ConfEntry(value, settings.origin_of(source) or _DERIVED, source)


def redelivery_budget(
    settings: Settings, conf: dict[str, ConfEntry] | None = None
) -> RedeliveryBudget:
    """The worst case a message stays unacknowledged under ``settings`` (see the class)."""
    return budget_of(settings, conf if conf is not None else build_conf(settings))


def _rule_problems(conf: dict[str, ConfEntry], rule_ids: tuple[str, ...]) -> list[str]:
    """Construction-time refusals that are rules of the engine (``celery_kit.config.rules``):
    the same predicates as ``doctor``, with the kit's policy (its serializer list) and wording."""
    subject = kit_subject(
        conf,
        max_prefetch=1,
        extra_unacked_s=0.0,
        consumer_timeout=None,
        unsafe_content=d.UNSAFE_SERIALIZERS,
    )
    return [
        f"{f.message}: "
        + ", ".join(f"{e.origin} = {e.value!r}" for e in f.evidence)
        + f"; {f.rule.fix_kit} [{f.rule.id}]"
        for f in evaluate(subject, only=rule_ids)
    ]


def _check(settings: Settings, conf: dict[str, ConfEntry]) -> list[str]:
    problems: list[str] = []

    def show(key: str) -> str:
        entry = conf[key]
        return f"`{entry.source}` = {entry.value!r} ({entry.origin})"

    soft, hard = conf["task_soft_time_limit"].value, conf["task_time_limit"].value
    if soft is None or hard is None or not soft > 0 or not hard > 0:
        problems.append(
            f"time limits must both be set and positive: {show('task_soft_time_limit')},"
            f" {show('task_time_limit')}"
        )
    else:
        problems += _rule_problems(conf, ("soft-limit-not-below-hard",))
    prefetch = conf["worker_prefetch_multiplier"].value
    if not isinstance(prefetch, int) or prefetch < 1:
        problems.append(
            f"{show('worker_prefetch_multiplier')} must be an integer >= 1 (0 means"
            " unlimited prefetch: one worker hoards the whole queue and priorities stop"
            " working); use 1 for latency, more only for short bulk tasks"
        )
    if not settings.serialization.allow_unsafe:
        problems += _rule_problems(conf, ("unsafe-serializer",))
    problems += check_topology(
        settings,
        default_queue=str(conf["task_default_queue"].value),
        transport_options=conf["broker_transport_options"].value,
    )
    problems += beat_problems(
        settings, declared_queues(settings, str(conf["task_default_queue"].value))
    )
    return problems
