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
from celery_kit.config.delays import delay_key
from celery_kit.config.entries import ConfEntry, RedeliveryBudget
from celery_kit.config.overrides import apply_overrides
from celery_kit.config.profiles import max_prefetch_multiplier
from celery_kit.config.renewal import check_tls, kit_visibility_timeout
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
        _derive_redelivery(settings, conf)
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
    conf = conf if conf is not None else build_conf(settings)
    limits = [float(conf["task_time_limit"].value)]
    annotations = conf.get("task_annotations")
    if annotations is not None and isinstance(annotations.value, dict):
        limits += [
            float(v["time_limit"])
            for v in annotations.value.values()
            if isinstance(v, dict) and v.get("time_limit")
        ]
    return RedeliveryBudget(
        max_time_limit_s=max(limits),
        # the largest prefetch any worker runs with: bulk profiles may prefetch more
        prefetch_multiplier=max(
            1,
            int(conf["worker_prefetch_multiplier"].value),
            max_prefetch_multiplier(settings.workers),
        ),
        max_delay_s=_held_delay_s(settings),
        margin_s=settings.broker.visibility_margin_s,
    )


def _seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name} = {value!r} is not a number of seconds; remove it to let the kit derive"
            " it (recommended), or set broker.visibility_timeout_s"
        ) from None


def _held_delay_s(settings: Settings) -> float:
    """Longest countdown a worker may hold: the delay threshold when the delay set takes
    the longer ones (config/delays.py), else ``max_countdown_s``/``retry_backoff_max_s``."""
    if settings.uses_delay_set:
        return settings.delays.effective_threshold_s
    return max(settings.tasks.max_countdown_s, settings.tasks.retry_backoff_max_s)


def _derive_redelivery(settings: Settings, conf: dict[str, ConfEntry]) -> None:
    given_transport = conf["broker_transport_options"]
    options = dict(given_transport.value)
    # the dict now mixes the user's keys with derived ones: "derived" unless the user set it
    transport = ConfEntry(
        options,
        _DERIVED if given_transport.origin == _DEFAULT else given_transport.origin,
        given_transport.source,
    )
    if settings.is_redis_broker:
        if settings.uses_kit_transport:
            timeout = _derive_kit_transport(settings, conf, options)
        else:
            timeout = _budget_visibility(settings, conf, options)
        origin = settings.origin_of("broker.visibility_timeout_s") or _DERIVED
        options.setdefault("health_check_interval", settings.broker.health_check_interval_s)
        options["visibility_timeout"] = timeout
        conf["broker_transport_options"] = ConfEntry(options, transport.origin, transport.source)
        backend = conf.get("result_backend_transport_options")
        backend_opts = dict(backend.value) if backend else {}
        backend_opts["visibility_timeout"] = timeout
        conf["result_backend_transport_options"] = ConfEntry(
            backend_opts, backend.origin if backend else origin, "broker.visibility_timeout_s"
        )
        conf["visibility_timeout"] = ConfEntry(timeout, origin, "broker.visibility_timeout_s")
    elif settings.is_amqp_broker:
        budget = redelivery_budget(settings, conf)
        limit = settings.broker.consumer_timeout_s
        if budget.required_s > limit:
            raise ConfigError(
                f"RabbitMQ closes a channel whose delivery stays unacknowledged longer than"
                f" its consumer_timeout ({limit:g} s, broker.consumer_timeout_s), and"
                f" requeues the task while it still runs. Here a message can stay"
                f" unacknowledged for {budget.explain()}. Lower tasks.time_limit_s,"
                " the largest prefetch_multiplier ([worker] or a [workers.*] profile) or"
                " tasks.max_countdown_s, or raise"
                " consumer_timeout on the server (rabbitmq.conf) and set"
                " broker.consumer_timeout_s to match."
            )
        options.setdefault("confirm_publish", settings.broker.confirm_publish)
        conf["broker_transport_options"] = ConfEntry(options, transport.origin, transport.source)


def _budget_visibility(
    settings: Settings, conf: dict[str, ConfEntry], options: dict[str, Any]
) -> float:
    """kombu's transport: the visibility timeout must cover the whole redelivery budget."""
    budget = redelivery_budget(settings, conf)
    given = settings.broker.visibility_timeout_s or options.get("visibility_timeout")
    given = _seconds(given, "broker_transport_options.visibility_timeout")
    if given is not None and given < budget.required_s:
        raise ConfigError(
            f"broker.visibility_timeout_s = {float(given):g} s is too short: a message"
            f" can stay unacknowledged for {budget.explain()}, and Redis would hand it"
            " to a second worker while the first still runs it. Remove the setting to"
            " let the kit derive it, or raise it to at least"
            f" {budget.required_s:g} s, or lower the limits/countdowns."
        )
    return float(given) if given is not None else budget.required_s


def _derive_kit_transport(
    settings: Settings, conf: dict[str, ConfEntry], options: dict[str, Any]
) -> float:
    """``broker_transport`` = the kit's; visibility timeout from the renewal interval."""
    origin = settings.origin_of("broker.transport") or _DEFAULT
    conf.setdefault("broker_transport", ConfEntry(d.KIT_TRANSPORT, origin, "broker.transport"))
    check_tls(settings, tls_configured="broker_use_ssl" in conf)
    options.setdefault("renewal_interval", settings.broker.renewal_interval_s)
    options.setdefault("restore_interval", settings.broker.restore_interval_s)
    if settings.uses_delay_set:
        options.setdefault("delay_key", delay_key(settings.redis.key_prefix))
    given = settings.broker.visibility_timeout_s or options.get("visibility_timeout")
    return kit_visibility_timeout(
        settings, _seconds(given, "broker_transport_options.visibility_timeout")
    )


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
