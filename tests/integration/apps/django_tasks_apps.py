"""Kit apps the Django Tasks tests point a backend's ``OPTIONS["APP"]`` at."""

from __future__ import annotations

from celery_kit import Settings, make_app

#: RabbitMQ broker and no result_backend: results are disabled (nothing connects here).
#: Built without the environment, whose CELERY_BROKER_URL names the test's Redis.
NO_RESULTS = make_app(
    "nores", settings=Settings(_environ={}, broker_url="amqp://guest:guest@127.0.0.1:5672//")
)
