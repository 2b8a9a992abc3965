"""Dead-letter entries: serialization, routing for replay, exception summaries."""

from __future__ import annotations

from celery_kit.coordination.dead_letter import DeadLetter, describe


def entry(**kwargs: object) -> DeadLetter:
    values: dict[str, object] = {
        "id": "abc",
        "task": "proj.charge",
        "args": [1, "x"],
        "kwargs": {"amount": 5},
        "reason": "permanent",
        "exception_type": "proj.Error",
        "exception": "boom",
        "traceback": "Traceback ...",
        "attempts": 1,
    }
    values.update(kwargs)
    return DeadLetter(**values)  # type: ignore[arg-type]


def test_round_trip_through_json() -> None:
    e = entry(priority=3, queue="critical", replays=2)
    assert DeadLetter.from_json(e.to_json()) == e


def test_unknown_fields_from_a_newer_kit_are_ignored() -> None:
    text = entry().to_json()[:-1] + ', "added_later": 1}'
    assert DeadLetter.from_json(text).id == "abc"


def test_redis_routing_replays_to_the_same_queue() -> None:
    e = entry(queue="critical", routing_key="critical", priority=0)
    assert e.routing() == {"queue": "critical", "priority": 0}


def test_amqp_routing_replays_through_the_same_exchange() -> None:
    e = entry(exchange="tasks", routing_key="payments.charge")
    assert e.routing() == {"exchange": "tasks", "routing_key": "payments.charge"}


def test_describe_keeps_the_end_of_the_traceback() -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("x" * 10_000)
        deep(n - 1)

    try:
        deep(50)
    except ValueError as exc:
        kind, message, tb = describe(exc)
    assert kind == "builtins.ValueError"
    assert len(message) == 4000
    assert len(tb) <= 4000
    assert tb.splitlines()[-1].startswith("ValueError: xxx")
    assert "in deep" in tb
