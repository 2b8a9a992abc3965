"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kombu import Connection


@pytest.fixture(params=["redis", pytest.param("amqp", marks=pytest.mark.amqp)])
def broker(
    request: pytest.FixtureRequest, kit_redis_url: str, kit_unique_name: str
) -> Iterator[tuple[str, str]]:
    """(broker URL, default queue) on each broker: the private Redis's fresh database with
    queue ``default``, or RabbitMQ with a queue of its own, deleted afterwards."""
    if request.param == "redis":
        yield kit_redis_url, "default"
        return
    url = request.getfixturevalue("kit_amqp_url")
    yield url, kit_unique_name
    with Connection(url) as conn:
        conn.channel().queue_delete(kit_unique_name)
