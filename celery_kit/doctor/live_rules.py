"""The rules ``doctor --live`` checks against the running broker (definitions only)."""

from __future__ import annotations

from celery_kit.config.rules.model import Rule, Scope, Severity

__all__ = [
    "AMQP_CONSUMER_TIMEOUT",
    "AMQP_IDLE_QUEUE",
    "AMQP_QUEUE_ARGUMENTS",
    "BROKER_UNREACHABLE",
    "KIT_STARTUP_REFUSAL",
    "LIVE_RULES",
    "REDIS_CONFIG_HIDDEN",
    "REDIS_EVICTION",
    "REDIS_PERSISTENCE",
    "REDIS_VERSION",
]

_REDIS_DOCS = "https://redis.io/docs/latest"

BROKER_UNREACHABLE = Rule(
    "broker-unreachable",
    Severity.ERROR,
    "Broker not reachable",
    "The live checks could not connect within their timeout; workers started the same way"
    " would not consume anything either.",
    "https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-url",
    "check broker_url, network and credentials",
    "check broker_url (CELERY_KIT_BROKER_URL / the TOML file)",
    Scope.LIVE,
)
REDIS_EVICTION = Rule(
    "redis-eviction-policy",
    Severity.ERROR,
    "Redis may evict queued tasks",
    "With a maxmemory-policy other than noeviction, Redis deletes keys when memory runs"
    " out: queue lists and the unacked index are keys like any other, so tasks vanish.",
    f"{_REDIS_DOCS}/develop/reference/eviction/",
    "CONFIG SET maxmemory-policy noeviction (and in redis.conf); use a separate Redis for caching",
    "the same on the server; keep the cache on another Redis than broker_url",
    Scope.LIVE,
)
REDIS_PERSISTENCE = Rule(
    "redis-no-persistence",
    Severity.WARNING,
    "Redis persistence off",
    "Without AOF and without RDB snapshots a Redis restart empties every queue and the"
    " unacked index: all waiting and running tasks are lost.",
    f"{_REDIS_DOCS}/operate/oss_and_stack/management/persistence/",
    "appendonly yes (appendfsync everysec) on the broker Redis",
    "the same on the server",
    Scope.LIVE,
)
REDIS_VERSION = Rule(
    "redis-version",
    Severity.INFO,
    "Redis server version",
    "The broker's version, for the record; Redis before 6.2 lacks commands newer kombu"
    " and redis-py releases use, and is out of support.",
    "https://redis.io/docs/latest/operate/oss_and_stack/install/",
    "run a supported Redis (7.x)",
    "the same",
    Scope.LIVE,
)
REDIS_CONFIG_HIDDEN = Rule(
    "redis-config-unreadable",
    Severity.INFO,
    "Redis CONFIG not readable",
    "CONFIG is disabled or not permitted for this user (managed Redis often does this);"
    " the doctor read INFO instead, which may not show every setting.",
    "https://redis.io/docs/latest/commands/config-get/",
    "check maxmemory-policy and persistence in your provider's console",
    "the same",
    Scope.LIVE,
)
AMQP_CONSUMER_TIMEOUT = Rule(
    "rabbitmq-consumer-timeout",
    Severity.ERROR,
    "RabbitMQ consumer_timeout below the longest late-acked task",
    "RabbitMQ closes a channel whose delivery stays unacknowledged past consumer_timeout"
    " (30 min by default) and requeues its messages, so a long late-acked task or a"
    " long ETA runs twice and the worker reconnects.",
    "https://www.rabbitmq.com/docs/consumers#acknowledgement-timeout",
    "raise consumer_timeout in rabbitmq.conf (or x-consumer-timeout per queue) above the"
    " longest hard limit x prefetch and the longest ETA",
    "lower tasks.time_limit_s / prefetch, or raise consumer_timeout and set"
    " broker.consumer_timeout_s to match",
    Scope.LIVE,
)
AMQP_QUEUE_ARGUMENTS = Rule(
    "rabbitmq-queue-arguments-differ",
    Severity.ERROR,
    "Existing queue declared with other arguments",
    "RabbitMQ refuses to redeclare a queue with different arguments (PRECONDITION_FAILED"
    " inequivalent arg): the worker that declares it stops at start-up.",
    "https://www.rabbitmq.com/docs/queues#property-equivalence",
    "make task_queues match the existing queue, or drain and delete the queue first",
    "make [queues] match, or drain and delete the queue first",
    Scope.LIVE,
)
AMQP_IDLE_QUEUE = Rule(
    "queue-without-consumers",
    Severity.WARNING,
    "Messages waiting in a queue nobody consumes",
    "A declared queue holds messages but has no consumer: no worker is started with -Q"
    " for it, so its tasks wait until someone notices.",
    "https://docs.celeryq.dev/en/stable/userguide/workers.html#queues",
    "start a worker with -Q <queue>, or route the tasks elsewhere",
    "add the queue to a [workers.*] profile (celery -A proj kit workers)",
    Scope.LIVE,
)

#: Not a live rule: a kit worker's start-up refusal (task routing, Redis-backed task
#: options), reported by ``kit check``.
KIT_STARTUP_REFUSAL = Rule(
    "kit-startup-refusal",
    Severity.ERROR,
    "A kit worker would refuse to start (kit apps)",
    "A task names a queue not declared in [queues], a priority off the kit's 0-9 scale, or"
    " a Redis-backed option (lock, idempotency, rate) without a Redis; the worker's"
    " start-up checks stop it, so the deploy would fail.",
    "https://docs.celeryq.dev/en/stable/userguide/extending.html#worker-bootsteps",
    "declare the queue in task_queues (plain Celery has no such start-up check)",
    "declare the queue in [queues], use a priority name or 0-9, set redis.url",
    Scope.TASKS,
)

LIVE_RULES: tuple[Rule, ...] = (
    BROKER_UNREACHABLE,
    REDIS_EVICTION,
    REDIS_PERSISTENCE,
    REDIS_VERSION,
    REDIS_CONFIG_HIDDEN,
    AMQP_CONSUMER_TIMEOUT,
    AMQP_QUEUE_ARGUMENTS,
    AMQP_IDLE_QUEUE,
    KIT_STARTUP_REFUSAL,
)
