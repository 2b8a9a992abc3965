"""Worker app for the tracing and task-log tests; ``[tracing]``/``[logging]`` from env.

``traced.stuck`` ignores its soft time limit, so the parent kills its pool child at the
hard limit (1.5 s).
"""

from __future__ import annotations

import logging
import time

from celery.exceptions import SoftTimeLimitExceeded

from celery_kit import make_app

app = make_app(
    "kit_traced",
    tasks={"limits": {"traced.stuck": {"soft_time_limit_s": 0.5, "time_limit_s": 1.5}}},
)
log = logging.getLogger("kit_traced")


@app.task(name="traced.add")
def add(a: int, b: int) -> int:
    log.info("adding %s and %s", a, b)
    return a + b


@app.task(name="traced.once", idempotency_key="once:{key}")
def once(key: str) -> str:
    return key


@app.task(name="traced.stuck")
def stuck() -> None:
    try:
        time.sleep(10)
    except SoftTimeLimitExceeded:
        time.sleep(10)  # ignore the soft limit: the hard limit kills this process
