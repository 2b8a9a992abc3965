"""bench.reliability apps: the kit app (one no-op per helper) and plain Celery.

Flavours: ``kit`` (make_app from the environment), ``plain`` (Celery's defaults) and
``plain_conf`` (plain ``Celery`` with the kit's Celery settings but none of its code:
isolates the cost of ``KitTask`` itself). Workers import ``bench._reliability_worker``.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task

from celery_kit import Settings, make_app

#: The kit variants: task name -> kit task options.
KIT_VARIANTS: dict[str, dict[str, Any]] = {
    "bench.celery_base": {"base": Task},  # the kit app, but Celery's Task class
    "bench.off": {},
    "bench.idem": {"idempotency_key": "noop:{i}"},
    "bench.idem_dedupe": {"idempotency_key": "noop:{i}", "dedupe_enqueue": True},
    "bench.lock": {"lock": "noop:{i}"},
    "bench.rate": {"rate": "1000000/s"},  # never deferred: measures the cost only
    "bench.all": {"idempotency_key": "noop:{i}", "lock": "noop:{i}", "rate": "1000000/s"},
}


def noop(i: int) -> None:
    """The benchmarked task body."""
    return None


def build(flavour: str, *, environ: dict[str, str] | None = None) -> Celery:
    """The app of ``flavour`` with its no-op tasks registered."""
    env = dict(os.environ if environ is None else environ)
    if flavour == "kit":
        app = make_app("bench_reliability", settings=Settings(_environ=env))
        for name, options in KIT_VARIANTS.items():
            app.task(name=name, shared=False, ignore_result=True, **options)(noop)
        return app
    app = Celery(f"bench_{flavour}", broker=env["CELERY_BROKER_URL"])
    app.conf.broker_connection_retry_on_startup = True
    if flavour == "plain_conf":  # queue "default", like the kit: use another Redis db
        app.conf.update(Settings(_environ=env).celery_conf())
    else:
        app.conf.task_default_queue = "plain"
    app.task(name=f"bench.{flavour}", shared=False, ignore_result=True)(noop)
    return app
