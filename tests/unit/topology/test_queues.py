"""Queues and priorities without a broker: the kit scale, its translation, the declarations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from celery_kit import ConfigError, Settings, make_app
from celery_kit.config.topology import DEFAULT_QUEUE_NAMES, Priority, coerce_priority, kombu_queues
from celery_kit.topology.priority import InvalidPriorityError, PriorityMap
from celery_kit.topology.publish import wrap_sender

REDIS = "redis://127.0.0.1:6399/0"
AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def settings(url: str = REDIS, /, **values: Any) -> Settings:
    return Settings(_environ={}, broker_url=url, **values)


def table(url: str = REDIS, /, **values: Any) -> PriorityMap:
    s = settings(url, **values)
    return PriorityMap.from_settings(s, default_queue=s.tasks.default_queue)


def sender(url: str, send: Callable[..., Any]) -> Callable[..., Any]:
    """The kit's publish wrapper around ``send`` for an app on ``url`` (message optional)."""
    wrapped = wrap_sender(make_app("t", settings=settings(url)), send)

    def call(producer: Any, name: str, message: Any, *args: Any, **kw: Any) -> Any:
        return wrapped(producer, name, message or SimpleNamespace(headers={}), *args, **kw)

    return call


# -- the scale ---------------------------------------------------------------------------


def test_priority_names_are_ordered_higher_is_more_urgent() -> None:
    assert [int(p) for p in Priority] == sorted(int(p) for p in Priority)
    assert Priority.LOWEST == 0
    assert Priority.HIGHEST == 9


@pytest.mark.parametrize(
    ("value", "expected"),
    [(Priority.HIGH, 7), (0, 0), (9, 9), ("high", 7), (" Lowest ", 0), ("6", 6)],
)
def test_coerce_priority_accepts_levels_ints_and_names(value: object, expected: int) -> None:
    assert coerce_priority(value) == expected


@pytest.mark.parametrize("value", [10, -1, True, "urgent", "10", 7.0, None])
def test_coerce_priority_refuses_values_off_the_scale(value: object) -> None:
    with pytest.raises(ValueError, match="higher = more urgent"):
        coerce_priority(value)


# -- translation -------------------------------------------------------------------------


def test_redis_reverses_the_scale_so_urgent_work_is_in_the_first_list() -> None:
    redis = table()
    assert [redis.to_broker("default", p) for p in range(10)] == list(range(9, -1, -1))
    assert redis.to_broker("default", Priority.HIGH) == 2


def test_rabbitmq_keeps_the_scale_and_spreads_it_over_a_smaller_max_priority() -> None:
    amqp = table(AMQP, queues={"q": {}, "small": {"max_priority": 3}, "big": {"max_priority": 10}})
    assert [amqp.to_broker("q", p) for p in range(10)] == list(range(10))
    small = [amqp.to_broker("small", p) for p in range(10)]
    assert small == sorted(small)
    assert (small[0], small[-1]) == (0, 3)
    big = [amqp.to_broker("big", p) for p in range(10)]
    assert (big[0], big[-1]) == (0, 10)
    assert len(set(big)) == 10  # no two kit levels collapse on a finer broker scale


@pytest.mark.parametrize("broker", [REDIS, AMQP])
def test_to_kit_inverts_to_broker(broker: str) -> None:
    m = table(broker, queues={"q": {}, "big": {"max_priority": 10}})
    for queue in ("q", "big"):
        assert [m.to_kit(queue, m.to_broker(queue, p)) for p in range(10)] == list(range(10))


@pytest.mark.parametrize("broker", [REDIS, AMQP])
def test_no_priority_means_the_queue_default_not_the_top_slot(broker: str) -> None:
    m = table(broker, queues={"q": {}, "urgent": {"default_priority": "high"}})
    assert m.to_broker("q", None) == m.to_broker("q", Priority.NORMAL)
    assert m.to_broker("urgent", None) == m.to_broker("urgent", Priority.HIGH)
    top = 0 if broker == REDIS else 9
    assert m.to_broker("q", None) != top


def test_fifo_queues_ignore_the_priority() -> None:
    redis, amqp = table(), table(AMQP)
    # bulk is FIFO in the default topology: one list on Redis, no priority on RabbitMQ
    assert {redis.to_broker("bulk", p) for p in range(10)} == {9 - Priority.NORMAL}
    assert {amqp.to_broker("bulk", p) for p in range(10)} == {None}


def test_unknown_queues_get_the_generic_scale() -> None:
    assert table().to_broker("somebody-elses", Priority.HIGH) == 2


@pytest.mark.parametrize("bad", [10, -3, "urgent", True])
def test_publishing_a_priority_off_the_scale_is_refused(bad: object) -> None:
    sent: list[dict[str, Any]] = []
    send = sender(REDIS, lambda *args, **kw: sent.append(kw))
    with pytest.raises(InvalidPriorityError, match="higher = more urgent"):
        send(None, "t", None, queue="default", priority=bad)
    assert sent == []


def test_sender_translates_or_drops_the_priority() -> None:
    calls: list[tuple[Any, ...]] = []

    def celery_sender(*args: Any, **kw: Any) -> None:
        calls.append((args, kw))

    redis, amqp = sender(REDIS, celery_sender), sender(AMQP, celery_sender)
    redis(None, "t", None, queue="high", priority=Priority.HIGH)
    redis(None, "t", None)  # no queue, no exchange: the default queue's default priority
    amqp(None, "t", None, queue="bulk", priority=Priority.HIGH)
    assert calls[0][1]["priority"] == 2
    assert calls[1][1]["priority"] == 9 - Priority.NORMAL
    assert "priority" not in calls[2][1]
    assert calls[0][0][3:] == (None, None, "high")  # exchange, routing_key, queue passed on


def test_sender_remembers_translations_per_queue_and_value_only() -> None:
    calls: list[dict[str, Any]] = []
    send = sender(AMQP, lambda *args, **kw: calls.append(kw))
    for _ in range(2):  # the second round is answered from the sender's memo
        send(None, "t", None, queue="high", priority=1)
        send(None, "t", None, queue="bulk", priority=1)
    with pytest.raises(InvalidPriorityError):  # True == 1 as a key, but it is no priority
        send(None, "t", None, queue="high", priority=True)
    expected = table(AMQP).to_broker("high", 1)
    assert [c.get("priority") for c in calls] == [expected, None, expected, None]


# -- declarations and transport options ---------------------------------------------------


def test_default_topology() -> None:
    s = settings()
    assert list(s.queues) == list(DEFAULT_QUEUE_NAMES)
    assert [n for n, q in s.queues.items() if not q.carries_priority] == ["bulk"]


def test_rabbitmq_queues_carry_x_max_priority_and_queue_type() -> None:
    s = settings(
        AMQP,
        queues={
            "default": {},
            "q5": {"max_priority": 5, "arguments": {"x-message-ttl": 60000}},
            "fifo": {"priority": False},
            "quorum": {"queue_type": "quorum"},
        },
    )
    args = {q.name: q.queue_arguments for q in kombu_queues(s.queues, amqp=True)}
    assert args == {
        "default": {"x-max-priority": 9},
        "q5": {"x-message-ttl": 60000, "x-max-priority": 5},
        "fifo": None,
        "quorum": {"x-queue-type": "quorum"},
    }
    assert all(q.routing_key == q.name for q in s.celery_conf()["task_queues"])


def test_redis_queues_have_no_amqp_arguments() -> None:
    assert {q.queue_arguments for q in settings().celery_conf()["task_queues"]} == {None}


def test_redis_priority_options_keep_the_users_other_transport_options() -> None:
    conf = settings(broker={"transport_options": {"sep": "|", "socket_timeout": 5}}).celery_conf()
    options = conf["broker_transport_options"]
    assert options["priority_steps"] == list(range(10))
    assert options["queue_order_strategy"] == "priority"
    assert options["sep"] == "|"  # the user's separator wins (an old deployment may need it)
    assert options["socket_timeout"] == 5
    assert "visibility_timeout" in options


def test_rabbitmq_gets_no_redis_options() -> None:
    assert "priority_steps" not in settings(AMQP).celery_conf()["broker_transport_options"]


@pytest.mark.parametrize(
    "values",
    [
        {"broker": {"transport_options": {"priority_steps": [0, 3, 6, 9]}}},
        {"celery_overrides": {"broker_transport_options": {"priority_steps": [0, 5]}}},
    ],
)
def test_other_priority_steps_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"priority_steps .* list\(range\(10\)\)"):
        settings(**values)


def test_default_queue_is_declared_even_when_not_listed() -> None:
    s = settings(queues={"only": {}}, tasks={"default_queue": "work"})
    assert [q.name for q in s.celery_conf()["task_queues"]] == ["only", "work"]


def test_unknown_queues_are_refused_at_publish_not_created() -> None:
    assert settings().celery_conf()["task_create_missing_queues"] is False
    loosened = settings(celery_overrides={"task_create_missing_queues": True})
    assert loosened.celery_conf()["task_create_missing_queues"] is True


# -- bad topology input: a ConfigError naming the problem ---------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"queues": {"q": {"priority": True, "queue_type": "quorum"}}}, "quorum queue cannot"),
        ({"queues": {"q": {"default_priority": 10}}}, r"queues\.q\.default_priority"),
        ({"queues": {"q": {"max_priority": 0}}}, r"queues\.q\.max_priority"),
        ({"queues": {"q": {"arguments": {"x-max-priority": 3}}}}, "set `max_priority`"),
        ({"queues": {"q": {"priorty": 3}}}, "did you mean `queues.q.priority`"),
        ({"queues": {"a:b": {}}}, "queue name 'a:b'"),
    ],
)
def test_bad_queue_specs_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**values)


def test_quorum_queues_default_to_fifo() -> None:
    s = settings(AMQP, queues={"default": {}, "q": {"queue_type": "quorum"}})
    assert not s.queues["q"].carries_priority


def test_duplicate_queue_names_in_toml_are_named(tmp_path: Path) -> None:
    config = tmp_path / "kit.toml"
    config.write_text("[queues]\ncritical = {}\ndefault = {}\ncritical = { priority = false }\n")
    with pytest.raises(ConfigError, match=r"line 4.*`critical = \{ priority = false \}`"):
        Settings(config, _environ={})


def test_duplicate_queue_names_in_env_json_are_refused() -> None:
    env = {"CELERY_KIT_QUEUES": '{"default": {}, "low": {}, "default": {"priority": false}}'}
    with pytest.raises(ConfigError, match="CELERY_KIT_QUEUES: key 'default' appears twice"):
        Settings(_environ=env)


def test_queues_replace_the_default_topology_from_env() -> None:
    s = Settings(_environ={"CELERY_KIT_QUEUES": '{"default": {}, "slow": {"priority": false}}'})
    assert list(s.queues) == ["default", "slow"]


def test_redelivery_budget_covers_the_largest_profile_prefetch() -> None:
    bulk = {"queues": ["bulk"], "kind": "bulk", "prefetch_multiplier": 8}
    tasks = {"time_limit_s": 60, "soft_time_limit_s": 50}
    kombu = {"transport": "kombu"}
    plain = settings(tasks=tasks, broker=kombu).celery_conf()["visibility_timeout"]
    with_bulk = settings(tasks=tasks, workers={"bulk": bulk}, broker=kombu).celery_conf()[
        "visibility_timeout"
    ]
    assert with_bulk - plain == 60 * (8 - 1)


def test_rabbitmq_consumer_timeout_check_covers_the_largest_profile_prefetch() -> None:
    bulk = {"queues": ["bulk"], "kind": "bulk", "prefetch_multiplier": 8}
    with pytest.raises(ConfigError, match=r"x 8 prefetch.*\[workers\.\*\] profile"):
        settings(AMQP, workers={"bulk": bulk})


def test_delivered_priority_turns_the_broker_value_back_into_the_kit_one() -> None:
    from celery import Celery

    from celery_kit import make_app
    from celery_kit.topology.priority import delivered_priority

    redis_app, amqp_app = make_app("r", broker_url=REDIS), make_app("a", broker_url=AMQP)
    info = {"exchange": "", "routing_key": "high", "priority": 2}
    assert delivered_priority(redis_app, info) == Priority.HIGH
    assert delivered_priority(amqp_app, {**info, "priority": 7}) == Priority.HIGH
    assert delivered_priority(redis_app, {"routing_key": "high"}) is None
    assert delivered_priority(Celery("plain", set_as_current=False), info) is None
