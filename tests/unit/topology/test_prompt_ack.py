"""Solo workers on RabbitMQ acknowledge at once instead of a poll timeout later."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
from celery.concurrency.solo import TaskPool as SoloPool
from celery.concurrency.thread import TaskPool as ThreadPool

from celery_kit.topology.acks import PromptAck, applies


def consumer(pool: Any, driver: str = "amqp") -> Any:
    deferred: list[Any] = []
    c = SimpleNamespace(
        pool=pool,
        hub=object(),
        connection=SimpleNamespace(transport=SimpleNamespace(driver_type=driver)),
        deferred=deferred,
    )
    c.call_soon_ack = lambda p, *args: deferred.append((p, args))
    return c


def test_an_ack_asked_for_on_the_loop_thread_is_sent_at_once() -> None:
    c = consumer(SoloPool(limit=1))
    PromptAck(c).start(c)
    acked: list[str] = []
    c.call_soon_ack(acked.append, "tag-1")
    assert acked == ["tag-1"]
    assert c.deferred == []


def test_an_ack_from_another_thread_still_goes_through_the_loop() -> None:
    c = consumer(SoloPool(limit=1))
    PromptAck(c).start(c)
    acked: list[str] = []
    other = threading.Thread(target=c.call_soon_ack, args=(acked.append, "tag-2"))
    other.start()
    other.join()
    assert acked == []
    assert len(c.deferred) == 1


def test_a_failing_ack_is_logged_and_does_not_stop_the_consumer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = consumer(SoloPool(limit=1))
    PromptAck(c).start(c)

    def broken() -> None:
        raise ConnectionError("socket closed")

    c.call_soon_ack(broken)
    assert "acknowledging a message failed" in caplog.text


def test_installed_once_across_consumer_restarts() -> None:
    c = consumer(SoloPool(limit=1))
    step = PromptAck(c)
    step.start(c)
    first = c.call_soon_ack
    step.start(c)  # the connection was lost and the consumer restarted
    assert c.call_soon_ack is first


@pytest.mark.parametrize(
    ("pool", "driver"),
    [(ThreadPool(limit=1), "amqp"), (SoloPool(limit=1), "redis"), (SoloPool(limit=1), "kit")],
)
def test_other_pools_and_brokers_are_left_alone(pool: Any, driver: str) -> None:
    c = consumer(pool, driver)
    assert not applies(c)
    original = c.call_soon_ack
    PromptAck(c).start(c)
    assert c.call_soon_ack is original
