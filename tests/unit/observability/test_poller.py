"""The queue poller's gauges from one broker answer: totals, per priority, broker outages.

The broker is not asked here: a stand-in reader returns what ``DepthReader`` returns on
Redis (one count per list) or on RabbitMQ (one count per queue). What Redis really answers
is checked in tests/integration/test_metrics.py and test_render_prometheus.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pytest

from celery_kit import ConfigError, Settings, make_app
from celery_kit.observability.depth import QueueDepth, redis_list_names
from celery_kit.observability.metrics import metrics_of
from celery_kit.observability.poller import QueueLengthPoller
from celery_kit.testing import wait_until

STEPS = range(10)


class Reader:
    """Answers with the next item of ``answers`` (an exception is raised), then the last."""

    def __init__(self, *answers: dict[str, QueueDepth] | Exception) -> None:
        self.answers = list(answers)
        self.asked: list[list[str]] = []
        self.closed = False

    def read(self, queues: Iterable[str], **_: Any) -> dict[str, QueueDepth]:
        self.asked.append(list(queues))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        self.closed = True


def redis_depth(queue: str, per_step: dict[int, int]) -> QueueDepth:
    """What DepthReader reads from Redis: one count per list, every step listed."""
    counts = tuple((step, per_step.get(step, 0)) for step in STEPS)
    return QueueDepth(queue, sum(per_step.values()), 1.0, by_step=counts)


def kit_app(broker: str) -> Any:
    settings = Settings(_environ={}, broker_url=broker, metrics={"enabled": True})
    return make_app("t", settings=settings)


def poller_for(app: Any, reader: Reader, queues: list[str]) -> QueueLengthPoller:
    return QueueLengthPoller(
        app,
        metrics_of(app),
        queues=queues,
        interval_s=60,
        reader=reader,  # type: ignore[arg-type]
    )


def by_priority(app: Any, queue: str) -> dict[int, float]:
    """Every ``celery_queue_length_by_priority`` sample of ``queue``, by priority."""
    out = {}
    for family in metrics_of(app).registry.collect():
        for s in family.samples:
            if s.name == "celery_queue_length_by_priority" and s.labels["queue_name"] == queue:
                out[int(s.labels["priority"])] = s.value
    return out


def length(app: Any, queue: str) -> float | None:
    return metrics_of(app).registry.get_sample_value("celery_queue_length", {"queue_name": queue})


def test_redis_lists_become_kit_priorities_and_add_up_to_the_queue_length() -> None:
    app = kit_app("redis://127.0.0.1:1/0")
    # list `q` (step 0) holds kit priority 9 (most urgent), `q:9` kit priority 0
    reader = Reader({"q": redis_depth("q", {0: 4, 2: 1, 9: 3}), "e": redis_depth("e", {})})
    poller_for(app, reader, ["q", "e"]).sample_once()
    assert reader.asked == [["q", "e"]]  # one read for every queue
    levels = by_priority(app, "q")
    assert levels == {9: 4, 7: 1, 0: 3, **{p: 0 for p in (1, 2, 3, 4, 5, 6, 8)}}
    assert length(app, "q") == sum(levels.values()) == 8
    # an empty queue shows all ten levels at 0 (not absent, not stale)
    assert by_priority(app, "e") == {p: 0 for p in range(10)}


def test_a_drained_level_drops_to_zero_at_the_next_sample() -> None:
    app = kit_app("redis://127.0.0.1:1/0")
    reader = Reader({"q": redis_depth("q", {0: 5, 4: 2})}, {"q": redis_depth("q", {4: 1})})
    poller = poller_for(app, reader, ["q"])
    poller.sample_once()
    assert by_priority(app, "q")[9] == 5
    poller.sample_once()
    assert (by_priority(app, "q")[9], by_priority(app, "q")[5]) == (0, 1)
    assert length(app, "q") == 1


def test_rabbitmq_queues_get_their_total_and_no_per_priority_series() -> None:
    app = kit_app("amqp://guest:guest@127.0.0.1:1//")
    reader = Reader({"q": QueueDepth("q", 12, None, 0), "gone": QueueDepth("gone", None)})
    poller_for(app, reader, ["q", "gone"]).sample_once()
    assert length(app, "q") == 12
    assert length(app, "gone") is None  # undeclared: unknown, not 0
    assert by_priority(app, "q") == {}
    assert by_priority(app, "gone") == {}


def test_a_broker_outage_keeps_every_series_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = kit_app("redis://127.0.0.1:1/0")
    down = ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    reader = Reader(
        {"q": redis_depth("q", {0: 2, 6: 3})},
        down,
        down,
        {"q": redis_depth("q", {6: 1})},
    )
    poller = poller_for(app, reader, ["q"])
    poller.sample_once()
    before = by_priority(app, "q")
    # When two samples find the broker unreachable
    with caplog.at_level(logging.INFO, logger="celery_kit.observability.poller"):
        assert poller.sample_once() == {}  # no exception reaches the caller (the thread)
        assert poller.sample_once() == {}
        # Then the series keep their last values, and the outage is logged once
        assert by_priority(app, "q") == before
        assert length(app, "q") == 5
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "queue lengths unavailable" in warnings[0].getMessage()
        # And the next good sample overwrites them and says so
        poller.sample_once()
    assert (by_priority(app, "q")[9], by_priority(app, "q")[3]) == (0, 1)
    assert length(app, "q") == 1
    assert "queue lengths available again" in caplog.text


def test_a_failing_gauge_update_does_not_end_the_sampling_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = kit_app("redis://127.0.0.1:1/0")
    # the first answer breaks the gauge update (a bug, not a broker error)
    reader = Reader({"q": "not a depth"}, {"q": redis_depth("q", {0: 1})})  # type: ignore[arg-type]
    poller = QueueLengthPoller(
        app,
        metrics_of(app),
        queues=["q"],
        interval_s=0.01,
        reader=reader,  # type: ignore[arg-type]
    )
    poller.start()
    try:
        wait_until(lambda: by_priority(app, "q").get(9) == 1, timeout_s=30, what="a later sample")
    finally:
        poller.stop()
    assert "queue-length sample failed" in caplog.text
    assert reader.closed


def test_priority_is_a_label_of_the_kits_own_metrics() -> None:
    with pytest.raises(ConfigError, match="label of the kit's own metrics"):
        Settings(_environ={}, metrics={"labels": {"priority": "x"}})


def test_every_list_name_keeps_its_priority_step() -> None:
    # the reader pairs each LLEN with the step of its list (kombu's _q_for_pri)
    assert redis_list_names("q", sep=":", priority_steps=[0, 9, 0]) == ["q", "q:9"]
