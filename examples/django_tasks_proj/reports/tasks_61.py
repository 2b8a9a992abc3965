"""A task with kit options passed through ``@task(...)`` keywords (Django >= 6.1)."""

from __future__ import annotations

import time

from django.tasks import task


@task(kit_options={"idempotency_key": "locked-once:{key}", "lock": "locked-once:{key}"})
def locked_once(key: str) -> float:
    """Idempotent and locked by ``key``: a repeat returns the first run's result."""
    return time.time()
