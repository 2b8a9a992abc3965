"""The redelivery budget and what bounds it: Redis visibility timeout, RabbitMQ's
``consumer_timeout``.

A message stays unacknowledged for at most its longest hard time limit, times what a
worker prefetches, plus the longest delay a worker holds. ``derive_redelivery`` turns that
budget into transport options (or a refusal) from the *effective* Celery configuration,
after ``celery_overrides`` were applied. Celery keys are read through ``CeleryKeys``: only
``celery_conf`` and ``defaults`` spell them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery_kit.config import defaults as d
from celery_kit.config.celery_keys import CeleryKeys as K
from celery_kit.config.delays import delay_key
from celery_kit.config.entries import ConfEntry, RedeliveryBudget
from celery_kit.config.profiles import max_prefetch_multiplier
from celery_kit.config.renewal import check_tls, kit_visibility_timeout
from celery_kit.config.sources import Origin, OriginKind
from celery_kit.exceptions import ConfigError

if TYPE_CHECKING:
    from celery_kit.config.settings import Settings

__all__ = ["budget_of", "derive_redelivery"]

_DEFAULT = Origin(OriginKind.DEFAULT)
_DERIVED = Origin(OriginKind.DERIVED)


def budget_of(settings: Settings, conf: dict[str, ConfEntry]) -> RedeliveryBudget:
    """The worst case a message stays unacknowledged under ``settings`` and the Celery
    configuration ``conf`` built from them (see the class)."""
    limits = [float(conf[K.task_time_limit].value)]
    annotations = conf.get(K.task_annotations)
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
            int(conf[K.worker_prefetch_multiplier].value),
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


def derive_redelivery(settings: Settings, conf: dict[str, ConfEntry]) -> None:
    """Fill in the transport options that bound redelivery (in place): the visibility
    timeout on Redis (kit transport: from the renewal interval; kombu's: the whole
    budget), or refuse a budget beyond RabbitMQ's ``consumer_timeout``."""
    given_transport = conf[K.broker_transport_options]
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
        conf[K.broker_transport_options] = ConfEntry(options, transport.origin, transport.source)
        backend = conf.get(K.result_backend_transport_options)
        backend_opts = dict(backend.value) if backend else {}
        backend_opts["visibility_timeout"] = timeout
        conf[K.result_backend_transport_options] = ConfEntry(
            backend_opts, backend.origin if backend else origin, "broker.visibility_timeout_s"
        )
        conf["visibility_timeout"] = ConfEntry(timeout, origin, "broker.visibility_timeout_s")
    elif settings.is_amqp_broker:
        budget = budget_of(settings, conf)
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
        conf[K.broker_transport_options] = ConfEntry(options, transport.origin, transport.source)


def _budget_visibility(
    settings: Settings, conf: dict[str, ConfEntry], options: dict[str, Any]
) -> float:
    """kombu's transport: the visibility timeout must cover the whole redelivery budget."""
    budget = budget_of(settings, conf)
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
    conf.setdefault(K.broker_transport, ConfEntry(d.KIT_TRANSPORT, origin, "broker.transport"))
    check_tls(settings, tls_configured=K.broker_use_ssl in conf)
    options.setdefault("renewal_interval", settings.broker.renewal_interval_s)
    options.setdefault("restore_interval", settings.broker.restore_interval_s)
    if settings.uses_delay_set:
        options.setdefault("delay_key", delay_key(settings.redis.key_prefix))
    given = settings.broker.visibility_timeout_s or options.get("visibility_timeout")
    return kit_visibility_timeout(
        settings, _seconds(given, "broker_transport_options.visibility_timeout")
    )
