"""The Celery defaults celery_kit changes, each with the reason it changes it.

This module is the single source of the kit's opinionated values: ``Settings``
field defaults read them, and the README table is generated from ``SAFE_DEFAULTS``
(``celery-kit defaults --markdown``; a test keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_TIMEZONE",
    "DJANGO_FALLBACKS",
    "DOCUMENTED_EXTRA_KEYS",
    "KIT_TRANSPORT",
    "MAX_COUNTDOWN_S",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_BYTES_CEILING",
    "MIN_MESSAGE_BYTES",
    "RABBITMQ_CONSUMER_TIMEOUT_S",
    "RENEWAL_INTERVAL_S",
    "RESTORE_INTERVAL_S",
    "RETRY_BACKOFF_MAX_S",
    "SAFE_DEFAULTS",
    "UNSAFE_SERIALIZERS",
    "VISIBILITY_MARGIN_S",
    "SafeDefault",
    "default_for",
    "kit_value",
]


@dataclass(frozen=True)
class SafeDefault:
    """One Celery setting whose default the kit replaces."""

    key: str  #: Celery's (lowercase) setting name.
    value: Any  #: What the kit sets.
    celery_default: Any  #: What Celery would use (for the docs table).
    why: str  #: One sentence: the failure the kit's value prevents.
    setting: str | None = None  #: The kit field that controls it, if any.


#: Ordered as the README table shows them.
SAFE_DEFAULTS: tuple[SafeDefault, ...] = (
    SafeDefault(
        "task_acks_late",
        True,
        False,
        "Ack after the task ran, so a worker crash redelivers the task instead of losing it.",
        "tasks.acks_late",
    ),
    SafeDefault(
        "task_reject_on_worker_lost",
        True,
        None,
        "Without it a late-ack task whose pool child was killed (OOM, SIGKILL) is acked anyway,"
        " i.e. lost.",
        "tasks.reject_on_worker_lost",
    ),
    SafeDefault(
        "worker_prefetch_multiplier",
        1,
        4,
        "Long tasks stop hoarding messages another worker could run, and priorities keep"
        " their order.",
        "worker.prefetch_multiplier",
    ),
    SafeDefault(
        "task_serializer",
        "json",
        "json",
        "Pinned: pickle lets anyone who can publish run code in the worker.",
        "serialization.task_serializer",
    ),
    SafeDefault(
        "result_serializer",
        "json",
        "json",
        "Pinned for the same reason as task_serializer.",
        "serialization.result_serializer",
    ),
    SafeDefault(
        "accept_content",
        ["json"],
        ["json"],
        "Pinned: a worker refuses (and does not run) any pickle/yaml/msgpack message.",
        "serialization.accept_content",
    ),
    SafeDefault(
        "result_accept_content",
        ["json"],
        None,
        "Results are read with the same whitelist as tasks instead of inheriting it silently.",
        "serialization.result_accept_content",
    ),
    SafeDefault(
        "task_soft_time_limit",
        540,
        None,
        "A hung task gets SoftTimeLimitExceeded and a chance to clean up instead of blocking"
        " its slot forever.",
        "tasks.soft_time_limit_s",
    ),
    SafeDefault(
        "task_time_limit",
        600,
        None,
        "The pool child is killed 60 s after the soft limit; the task ends FAILURE and is not"
        " redelivered.",
        "tasks.time_limit_s",
    ),
    SafeDefault(
        "task_track_started",
        True,
        False,
        "Status pages can tell 'waiting' from 'running' (the STARTED state).",
        "tasks.track_started",
    ),
    SafeDefault(
        "result_expires",
        86400,
        86400,
        "Pinned to one day so results do not pile up in the backend.",
        "tasks.result_expires_s",
    ),
    SafeDefault(
        "result_backend_always_retry",
        True,
        False,
        "A brief Redis outage while storing a result retries instead of failing the task.",
        None,
    ),
    SafeDefault("enable_utc", True, True, "Pinned: every timestamp is UTC.", None),
    SafeDefault(
        "timezone",
        "UTC",
        None,
        "Explicit UTC; beat schedules are interpreted in it unless you set another.",
        "timezone",
    ),
    SafeDefault(
        "broker_connection_retry_on_startup",
        True,
        None,
        "A worker started before its broker waits for it instead of exiting (and the 6.0"
        " deprecation warning goes away).",
        "broker.connection_retry_on_startup",
    ),
    SafeDefault(
        "worker_cancel_long_running_tasks_on_connection_loss",
        True,
        False,
        "After a broker reconnect the broker redelivers running late-ack tasks; cancelling"
        " ours avoids running them twice at once (Celery 6 default).",
        "worker.cancel_long_running_tasks_on_connection_loss",
    ),
    SafeDefault(
        "worker_max_memory_per_child",
        512_000,
        None,
        "Recycles a pool child once its resident memory passes 500 MiB (checked after each"
        " task), so a slow leak in task code stays bounded; recycling by count instead costs"
        " a fork per N tasks (Celery runs gc.collect() before each): +4-6 % worker CPU per"
        " no-op task at N = 1000 (bench/results/overhead.md).",
        "worker.max_memory_per_child_kb",
    ),
    SafeDefault(
        "broker_heartbeat",
        30,
        120,
        "AMQP: a dead TCP connection is noticed in about a minute instead of four.",
        "broker.heartbeat_s",
    ),
    SafeDefault(
        "redis_backend_health_check_interval",
        30,
        None,
        "Redis result backend: idle connections are PINGed before use, so a restarted Redis"
        " costs a reconnect, not a failed result write.",
        "broker.health_check_interval_s",
    ),
    SafeDefault(
        "task_default_queue",
        "default",
        "celery",
        "Matches the kit's queue topology (critical/high/default/low/bulk).",
        "tasks.default_queue",
    ),
)

#: Lookup by Celery key; used by ``Settings`` field defaults.
_BY_KEY: dict[str, SafeDefault] = {d.key: d for d in SAFE_DEFAULTS}


#: Lookup by the kit setting that controls the value (``tasks.acks_late``).
_BY_SETTING: dict[str, SafeDefault] = {d.setting: d for d in SAFE_DEFAULTS if d.setting}


def kit_value(key: str) -> Any:
    """Return the kit's value for Celery setting ``key`` (a copy for lists)."""
    value = _BY_KEY[key].value
    return list(value) if isinstance(value, list) else value


def default_for(setting: str) -> Any:
    """Return the kit's value for kit setting ``setting`` (``"tasks.acks_late"``; lists copied).

    ``Settings`` field defaults read it, so the sections never spell Celery's key names.
    """
    value = _BY_SETTING[setting].value
    return list(value) if isinstance(value, list) else value


#: The kit's time zone (``Settings.timezone``, Celery's ``timezone``).
DEFAULT_TIMEZONE: str = kit_value("timezone")

#: Django settings Celery falls back to when no ``CELERY_*`` value is given
#: (``celery/app/utils.py: Settings.timezone``): Django name → Celery key.
DJANGO_FALLBACKS: dict[str, str] = {"TIME_ZONE": "timezone"}


#: Serializers that execute or construct arbitrary objects (pickle, yaml) or that the
#: kit does not test (msgpack): refused unless ``serialization.allow_unsafe = true``.
UNSAFE_SERIALIZERS: frozenset[str] = frozenset(
    {
        "pickle",
        "yaml",
        "msgpack",
        "application/x-python-serialize",
        "application/x-yaml",
        "application/x-msgpack",
    }
)

#: Longest countdown/ETA accepted at publish time. A delayed message is held
#: unacknowledged by the worker until it runs, so this feeds the visibility timeout.
#: Schedule anything longer with beat.
MAX_COUNTDOWN_S = 600.0

#: Cap on a single retry delay (Celery's own ``retry_backoff_max`` default).
RETRY_BACKOFF_MAX_S = 600.0

#: Largest task message body a worker accepts (10 MiB). Task arguments are meant to be
#: references (ids, URLs), not payloads; a body this large is almost always a bug or an
#: attack, and decoding it would stall the worker's main process for every other task.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
#: Bounds of ``tasks.max_message_bytes``: an empty task message is ~0.5 KiB of headers
#: and body; Redis strings end at 512 MiB (RabbitMQ's own limit is lower, 128 MiB).
MIN_MESSAGE_BYTES = 1024
MAX_MESSAGE_BYTES_CEILING = 512 * 1024 * 1024

#: Added on top of the computed worst case before a message may be redelivered.
VISIBILITY_MARGIN_S = 300.0

#: ``broker_transport`` for Redis brokers under ``broker.transport = "kit"``.
KIT_TRANSPORT = "celery_kit.transport.redis:Transport"

#: Kit Redis transport: a worker renews every message it holds this often; the visibility
#: timeout is derived from it (celery_kit.config.renewal).
RENEWAL_INTERVAL_S = 15.0

#: Kit Redis transport: how often a worker looks for expired messages to restore.
RESTORE_INTERVAL_S = 2.0

#: RabbitMQ's default ``consumer_timeout`` (30 min since 3.8.15): a delivery left
#: unacknowledged longer than this closes the channel and requeues everything on it.
RABBITMQ_CONSUMER_TIMEOUT_S = 1800.0

#: Keys the kit writes that are not in ``celery.app.defaults`` on purpose, with the
#: reason. Everything else it emits must be a key Celery knows (a test checks).
DOCUMENTED_EXTRA_KEYS: dict[str, str] = {
    "visibility_timeout": (
        "Celery's Redis guide tells users to set it next to the two transport options;"
        " Celery 5.7 reads it nowhere, but people and tools following that guide look"
        " there, so the kit keeps it equal to the real value."
    ),
    "redis_backend_health_check_interval": (
        "Read by celery.backends.redis (5.7) but missing from celery.app.defaults."
    ),
    # RedBeat (celery-redbeat) reads these from the app's conf; they are its settings,
    # not Celery's (docs/beat.md).
    "redbeat_redis_url": "RedBeat: the Redis holding the schedule and the leader lock.",
    "redbeat_redis_options": "RedBeat: keyword arguments of its Redis client.",
    "redbeat_key_prefix": "RedBeat: prefix of every key it writes (namespaced per app).",
    "redbeat_lock_key": "RedBeat: the leader lock's key.",
    "redbeat_lock_timeout": "RedBeat: the leader lock's lease, seconds.",
}
