"""Pytest plugin: a private redis-server, per-test Redis dbs, a RabbitMQ probe, real workers.

Enable with ``pytest_plugins = ["celery_kit.testing"]``; importing this module starts nothing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection
from kombu.utils.url import sanitize_url

from celery_kit.testing.processes import process_alive, wait_until
from celery_kit.testing.redis_server import RedisServer, find_redis_server
from celery_kit.testing.workers import (
    AMQP_URL_ENV,
    HEARTBEAT_FILE_ENV,
    WorkerFactory,
    WorkerProcess,
    WorkerStartError,
)

__all__ = [
    "AMQP_URL_ENV",
    "DEFAULT_AMQP_URL",
    "HEARTBEAT_FILE_ENV",
    "RedisServer",
    "WorkerFactory",
    "WorkerProcess",
    "WorkerStartError",
    "find_redis_server",
    "kit_amqp_url",
    "kit_redis_server",
    "kit_redis_url",
    "kit_unique_name",
    "kit_worker",
    "process_alive",
    "wait_until",
]

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(scope="session")
def kit_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private :class:`RedisServer` per test session; its log stays in basetemp."""
    with RedisServer(workdir=tmp_path_factory.mktemp("kit-redis")) as server:
        yield server


@pytest.fixture
def kit_redis_url(kit_redis_server: RedisServer) -> str:
    """A URL to a logical database of this test's own (cycling 1..63, flushed first)."""
    return kit_redis_server.url(kit_redis_server.fresh_db())


@pytest.fixture(scope="session")
def kit_amqp_url() -> str:
    """RabbitMQ URL from ``CELERY_KIT_TEST_AMQP_URL`` (default: local guest) if reachable.

    Skips the test when the broker is unreachable, or fails it when ``CI`` is set.
    """
    url = os.environ.get(AMQP_URL_ENV) or DEFAULT_AMQP_URL
    try:
        with Connection(url, connect_timeout=2.0) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=3)
    except Exception as exc:
        where = f"RabbitMQ unreachable at {sanitize_url(url)} ({type(exc).__name__}: {exc})"
        if os.environ.get("CI"):
            pytest.fail(f"RabbitMQ is required in CI: {where}; set {AMQP_URL_ENV}", pytrace=False)
        pytest.skip(f"{where}; start RabbitMQ or set {AMQP_URL_ENV}")
    return url


@pytest.fixture
def kit_unique_name() -> str:
    """A short unique name (``t`` + 8 hex chars) for queues on shared brokers."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kit_worker(tmp_path: Path) -> Iterator[WorkerFactory]:
    """Factory starting real workers (see :meth:`WorkerFactory.__call__`), stopped at teardown."""
    factory = WorkerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()
