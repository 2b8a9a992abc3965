"""bench.overhead apps: one no-op task per flavour, each worker on its own queue.

Flavours: ``plain`` (Celery's defaults), ``safe`` (plain ``Celery`` given the kit's
Celery settings by hand, none of its code), ``kit`` (``make_app`` defaults) and kit
variants: ``kit_metrics`` (metrics on), ``kit_idem`` (an idempotency key on the task),
``kit_recycle`` (children recycled every 1000 tasks, the old default), ``kit_kombu``
(kombu's Redis transport instead of the kit's), ``kit_prefetch4`` (Celery's prefetch
multiplier of 4 instead of the kit's 1). ``BENCH_QUEUE``
names the queue; workers import ``bench._overhead_worker``.
"""

from __future__ import annotations

import os

from celery import Celery

from celery_kit import Settings, make_app

#: Extra kit settings (environment) per kit flavour.
KIT_ENV: dict[str, dict[str, str]] = {
    "kit": {},
    "kit_metrics": {"CELERY_KIT_METRICS__ENABLED": "true", "CELERY_KIT_METRICS__PORT": "0"},
    "kit_idem": {},
    "kit_recycle": {"CELERY_KIT_WORKER__MAX_TASKS_PER_CHILD": "1000"},
    "kit_kombu": {"CELERY_KIT_BROKER__TRANSPORT": "kombu"},
    # shorter limits: the kit refuses prefetch 4 with 600 s tasks under RabbitMQ's
    # consumer_timeout (4 x 600 s would stay unacknowledged); the limits cost nothing here
    "kit_prefetch4": {
        "CELERY_KIT_WORKER__PREFETCH_MULTIPLIER": "4",
        "CELERY_KIT_TASKS__SOFT_TIME_LIMIT_S": "50",
        "CELERY_KIT_TASKS__TIME_LIMIT_S": "60",
    },
}
#: Hand-safe: the kit's Celery settings, but kombu's own Redis transport (the kit's
#: transport is kit code, not a setting a plain app would copy).
SAFE_ENV = {"CELERY_KIT_BROKER__TRANSPORT": "kombu"}
FLAVOURS = ("plain", "safe", *KIT_ENV)


def noop(i: int) -> None:
    """The benchmarked task body."""
    return None


def kit_environ(flavour: str, env: dict[str, str]) -> dict[str, str]:
    """The environment a kit flavour's settings are read from."""
    return {**env, "CELERY_KIT_TASKS__DEFAULT_QUEUE": env["BENCH_QUEUE"], **KIT_ENV[flavour]}


def build(flavour: str, *, environ: dict[str, str] | None = None) -> Celery:
    """The app of ``flavour`` with its no-op task ``bench.noop`` registered."""
    env = dict(os.environ if environ is None else environ)
    queue = env["BENCH_QUEUE"]
    if flavour in KIT_ENV:
        app = make_app("bench_overhead", settings=Settings(_environ=kit_environ(flavour, env)))
        options = {"idempotency_key": "noop:{i}"} if flavour == "kit_idem" else {}
        app.task(name="bench.noop", shared=False, ignore_result=True, **options)(noop)
        return app
    app = Celery(f"bench_{flavour}", broker=env["CELERY_BROKER_URL"])
    app.conf.broker_connection_retry_on_startup = True
    if flavour == "safe":  # the kit's settings, written by hand into a plain app
        app.conf.update(Settings(_environ={**kit_environ("kit", env), **SAFE_ENV}).celery_conf())
    else:
        app.conf.task_default_queue = queue
    app.task(name="bench.noop", shared=False, ignore_result=True)(noop)
    return app
