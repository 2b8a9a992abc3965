"""Kit apps the Django Tasks tests point a backend's ``OPTIONS["APP"]`` at."""

from __future__ import annotations

from typing import Any

from celery_kit import Settings, make_app

#: RabbitMQ broker and no result_backend: results are disabled (nothing connects here).
#: Built without the environment, whose CELERY_BROKER_URL names the test's Redis.
NO_RESULTS = make_app(
    "nores", settings=Settings(_environ={}, broker_url="amqp://guest:guest@127.0.0.1:5672//")
)

#: Apps the fault tests build at run time (they need the test's Redis URL).
DEAD_BROKER: Any = None
DEAD_RESULTS: Any = None
