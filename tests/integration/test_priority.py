"""One meaning of priority on real Redis and RabbitMQ, with real prefork workers.

Given/When/Then in each test. The same user-facing value (``Priority.HIGH``) is used on
both brokers; the kit translates it. Plain Celery on the same broker is the control.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Connection

from celery_kit import Settings, make_app
from celery_kit.config.topology import Priority
from celery_kit.testing import wait_until as wait_for

APPS = str(Path(__file__).parent / "apps")
pytestmark = pytest.mark.timeout(180)

#: Enough for the high-priority task to have thousands of tasks to overtake (the
#: 10,000-task figure and the timings are in bench/priority.py).
BACKLOG = 2000
#: Tasks allowed to start between the publish and the high-priority task's start: the
#: one whose ack frees the prefetch slot may already be on its way. Plain Celery runs
#: the whole remaining backlog (~BACKLOG) first.
ALLOWED_AHEAD = 3


@pytest.fixture(params=["redis", "amqp"])
def broker(
    request: pytest.FixtureRequest, kit_redis_url: str, kit_unique_name: str
) -> Iterator[tuple[str, str]]:
    """(broker URL, queue name prefix); RabbitMQ queues starting with it are deleted after."""
    if request.param == "redis":
        yield kit_redis_url, "q"
        return
    url = request.getfixturevalue("kit_amqp_url")
    yield url, kit_unique_name
    with Connection(url) as conn:
        channel = conn.channel()
        for suffix in ("", "-plain", "-a", "-b", "-c", "-d"):
            channel.queue_delete(kit_unique_name + suffix)


@pytest.fixture
def apps() -> Iterator[list[Celery]]:
    """Producer apps to close at teardown (their pooled broker connections)."""
    made: list[Celery] = []
    yield made
    for app in made:
        app.close()


def kit_env(broker_url: str, state_url: str, config: Path) -> dict[str, str]:
    return {
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": state_url,
        "KIT_TEST_STATE_URL": state_url,
        "CELERY_KIT_CONFIG": str(config),
    }


def single_queue_config(tmp_path: Path, queue: str) -> Path:
    """A topology of one priority queue, which is also the default queue."""
    config = tmp_path / "kit.toml"
    config.write_text(f'[tasks]\ndefault_queue = "{queue}"\n\n[queues]\n"{queue}" = {{}}\n')
    return config


def publish_backlog(app: Celery, *, priority: int | None) -> None:
    options = {} if priority is None else {"priority": priority}
    with app.producer_or_acquire() as producer:
        for _ in range(BACKLOG):
            app.send_task("topo.backlog", producer=producer, **options)


def overtaken(app: Celery, r: redis.Redis, *, priority: int) -> tuple[int, int]:
    """Publish a probe mid-backlog; return (backlog tasks that ran ahead, started total)."""
    wait_for(lambda: int(r.get("backlog:started") or 0) >= 20, timeout_s=60, what="backlog")
    result = app.send_task("topo.probe", ("high",), priority=priority)
    published_after = int(r.get("backlog:started") or 0)
    result.get(timeout=120)
    record = json.loads(r.get("probe:high"))
    return max(0, record["backlog_started"] - published_after), record["backlog_started"]


def test_high_priority_task_overtakes_a_low_priority_backlog(
    broker: tuple[str, str],
    kit_redis_url: str,
    kit_worker: Any,
    tmp_path: Path,
    apps: list[Celery],
) -> None:
    broker_url, queue = broker
    env = kit_env(broker_url, kit_redis_url, single_queue_config(tmp_path, queue))
    app = make_app("kit_topology", settings=Settings(_environ=env))
    apps.append(app)
    r = redis.Redis.from_url(kit_redis_url)
    # Given a backlog of low-priority tasks and one worker process working through it
    publish_backlog(app, priority=Priority.LOW)
    kit_worker("kit_topology", env=env, concurrency=1, pythonpath=[APPS])
    # When a task is published with Priority.HIGH (the same value on both brokers)
    ahead, started = overtaken(app, r, priority=Priority.HIGH)
    # Then it starts before the backlog drains: at most a prefetch slot's worth ran ahead
    assert ahead <= ALLOWED_AHEAD, f"{ahead} backlog tasks ran ahead of the HIGH task"
    assert started < BACKLOG // 2
    # and the task sees the kit's value, not the broker's (Redis stores 9 - 7 = 2)
    assert json.loads(r.get("probe:high"))["priority"] == Priority.HIGH


def test_control_plain_celery_runs_the_backlog_first(
    broker: tuple[str, str], kit_redis_url: str, kit_worker: Any
) -> None:
    broker_url, prefix = broker
    queue = f"{prefix}-plain"
    env = {
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": kit_redis_url,
        "KIT_TEST_STATE_URL": kit_redis_url,
        "KIT_TEST_QUEUE": queue,
    }
    plain = Celery("plain_topology", broker=broker_url, backend=kit_redis_url)
    plain.conf.task_default_queue = queue
    r = redis.Redis.from_url(kit_redis_url)
    try:
        # Given the same backlog sent with plain Celery's defaults and the same values
        publish_backlog(plain, priority=Priority.LOW)
        kit_worker("plain_topology", env=env, concurrency=1, pythonpath=[APPS])
        # When the same Priority.HIGH task is published
        ahead, _ = overtaken(plain, r, priority=Priority.HIGH)
        # Then it waits for (nearly) the whole backlog: this is what the kit fixes
        assert ahead > BACKLOG // 2
    finally:
        plain.close()


def test_retry_keeps_the_kit_priority(
    broker: tuple[str, str],
    kit_redis_url: str,
    kit_worker: Any,
    tmp_path: Path,
    apps: list[Celery],
) -> None:
    broker_url, queue = broker
    env = kit_env(broker_url, kit_redis_url, single_queue_config(tmp_path, queue))
    app = make_app("kit_topology", settings=Settings(_environ=env))
    apps.append(app)
    kit_worker("kit_topology", env=env, concurrency=1, pythonpath=[APPS])
    # Given a HIGH task that retries once (Celery re-sends with the delivered priority)
    attempts = app.send_task("topo.retry_once", ("k",), priority=Priority.HIGH).get(timeout=60)
    # Then both attempts carry HIGH (a second translation would turn 7 into 2 on Redis)
    assert [a["priority"] for a in attempts] == [Priority.HIGH, Priority.HIGH]
    # And a task sent without a priority gets the queue's default, not the top slot
    assert app.send_task("topo.where").get(timeout=60)["priority"] == Priority.NORMAL


# -- routing precedence, read back from the broker itself --------------------------------


def urgent_hook(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
) -> Any:
    """A business rule: ``urgent=True`` calls get Priority.HIGHEST (queue from the glob)."""
    return {"priority": Priority.HIGHEST} if (kwargs or {}).get("urgent") else None


def broker_view(broker_url: str, queues: list[str], redis_broker: bool) -> dict[str, Any]:
    """task id → (queue, priority as the broker stores it) for every waiting message."""
    found: dict[str, Any] = {}
    if redis_broker:
        client = redis.Redis.from_url(broker_url)
        for key in client.keys("*"):
            name = key.decode()
            if client.type(key) != b"list":
                continue
            queue, _, slot = name.partition(":")
            for raw in client.lrange(key, 0, -1):
                message = json.loads(raw)
                broker_priority = message["properties"].get("priority")
                assert int(slot or 0) == broker_priority  # the list is the priority
                found[message["headers"]["id"]] = (queue, broker_priority)
        return found
    with Connection(broker_url) as conn:
        channel = conn.channel()
        for queue in queues:
            while (message := channel.basic_get(queue, no_ack=True)) is not None:
                found[message.headers["id"]] = (queue, message.properties.get("priority"))
    return found


def test_routing_precedence_per_call_over_attribute_over_glob_over_default(
    broker: tuple[str, str], tmp_path: Path, apps: list[Celery]
) -> None:
    broker_url, prefix = broker
    a, b, c, d = (f"{prefix}-{s}" for s in "abcd")
    config = tmp_path / "kit.toml"
    config.write_text(
        f'[tasks]\ndefault_queue = "{d}"\n\n'
        f'[queues]\n"{a}" = {{}}\n"{b}" = {{}}\n"{c}" = {{}}\n"{d}" = {{ priority = false }}\n\n'
        f'[routes]\n"topo.pattern.*" = {{ queue = "{a}", priority = "high" }}\n'
    )
    app = make_app(
        "producer",
        settings=Settings(config, _environ={}, broker_url=broker_url, routers=[urgent_hook]),
    )
    apps.append(app)

    @app.task(shared=False, name="topo.pattern.pinned", queue=c, priority=Priority.HIGHEST)
    def pinned() -> None: ...

    redis_broker = broker_url.startswith("redis")
    sent = {
        # glob (the producer never imported these tasks: send_task by name)
        "glob": app.send_task("topo.pattern.x"),
        # per-call beats the glob
        "call>glob": app.send_task("topo.pattern.x", queue=b, priority=Priority.LOW),
        # a business-rule hook refines the glob's route
        "hook>glob": app.send_task("topo.pattern.x", kwargs={"urgent": True}),
        # task attributes beat the glob, per-call beats the attributes
        "attr>glob": pinned.apply_async(),
        "call>attr": pinned.apply_async(queue=b, priority=Priority.LOWEST),
        "attr by name": app.send_task("topo.pattern.pinned"),
        # no route: the default queue (FIFO here) with its default priority
        "default": app.send_task("topo.other", priority=Priority.HIGHEST),
    }
    view = broker_view(broker_url, [a, b, c, d], redis_broker)

    def kit(level: int) -> int | None:
        # what the broker must hold for kit ``level``: Redis reverses, RabbitMQ does not
        return 9 - level if redis_broker else level

    expected = {
        "glob": (a, kit(Priority.HIGH)),
        "call>glob": (b, kit(Priority.LOW)),
        "hook>glob": (a, kit(Priority.HIGHEST)),
        "attr>glob": (c, kit(Priority.HIGHEST)),
        "call>attr": (b, kit(Priority.LOWEST)),
        "attr by name": (c, kit(Priority.HIGHEST)),
        # a FIFO queue: one fixed list on Redis (the default level's); on RabbitMQ the kit
        # drops the value (kombu then sends 0, which a queue without x-max-priority ignores)
        "default": (d, kit(Priority.NORMAL) if redis_broker else 0),
    }
    assert {case: view[result.id] for case, result in sent.items()} == expected
