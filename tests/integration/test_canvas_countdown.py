"""The countdown guard walks whole canvases: refused at the caller, nothing published.

A too-long countdown/ETA anywhere (chain links, group members, chord header and body,
link/link_error callbacks, nested) raises ``CountdownTooLongError`` from the caller's
``apply_async``; the private Redis broker then holds no message at all. Each test runs
twice: with workers holding delays (``delays.enabled = false``: the bound is
``tasks.max_countdown_s``) and with the delay set (the bound is ``delays.max_delay_s``;
a delay beyond ``tasks.max_countdown_s`` but within it is accepted).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import chain, chord, group

from celery_kit import CountdownTooLongError, Settings, make_app
from celery_kit.testing import RedisServer

APPS = str(Path(__file__).parent / "apps")
LIMIT_S = 60
#: With the delay set: longer than tasks.max_countdown_s, accepted (within max_delay_s).
BEYOND_COUNTDOWN = 600
MAX_DELAY_S = 1000
TOO_LONG = 5000
#: The two places a delay can wait on Redis, and the setting that bounds it in each.
SETTING = {"worker holds delays": "tasks.max_countdown_s", "delay set": "delays.max_delay_s"}
BOUNDS = {
    "worker holds delays": {"CELERY_KIT_DELAYS__ENABLED": "false"},
    "delay set": {"CELERY_KIT_DELAYS__MAX_DELAY_S": str(MAX_DELAY_S)},
}
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=list(BOUNDS))
def bound(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def setup(kit_redis_server: RedisServer, bound: str) -> tuple[Any, redis.Redis]:
    broker, backend = kit_redis_server.fresh_db(), kit_redis_server.fresh_db()
    env = {
        "CELERY_BROKER_URL": kit_redis_server.url(broker),
        "CELERY_RESULT_BACKEND": kit_redis_server.url(backend),
        "CELERY_KIT_TASKS__MAX_COUNTDOWN_S": str(LIMIT_S),
        **BOUNDS[bound],
    }
    app = make_app("canvasproj", settings=Settings(_environ=env))

    @app.task(name="canvasproj.add", shared=False)
    def add(*numbers: int) -> int:
        return sum(numbers)

    return add, kit_redis_server.client(broker)


def far() -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=TOO_LONG)


CASES: dict[str, Callable[[Any], Any]] = {
    "chain link": lambda add: chain(add.s(1, 2), add.s(3).set(countdown=TOO_LONG)),
    "chain link eta": lambda add: chain(add.s(1, 2), add.s(3), add.s(4).set(eta=far())),
    "group member": lambda add: group(add.s(1), add.s(2), add.s(3).set(countdown=TOO_LONG)),
    "chord header": lambda add: chord([add.s(1), add.s(2).set(countdown=TOO_LONG)], add.s()),
    "chord body": lambda add: chord([add.s(1), add.s(2)], add.s().set(countdown=TOO_LONG)),
    "link": lambda add: add.s(1).set(link=add.s(2).set(countdown=TOO_LONG)),
    "link_error": lambda add: add.s(1).set(link_error=add.si(2).set(countdown=TOO_LONG)),
    "nested": lambda add: chain(
        add.s(1), group(add.s(2), chain(add.s(3), add.s(4).set(countdown=TOO_LONG))), add.s()
    ),
    "group starting a chain": lambda add: chain(
        group(add.s(1), add.s(2).set(countdown=TOO_LONG)), add.s()
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_too_long_delay_anywhere_is_refused_before_anything_is_sent(
    setup: tuple[Any, redis.Redis], case: str, bound: str
) -> None:
    add, broker = setup
    # Given a canvas with one too-long delay somewhere inside
    canvas = CASES[case](add)
    # When it is applied, Then the caller gets the kit's error
    with pytest.raises(CountdownTooLongError, match=f"{TOO_LONG:g} s|exceeds") as caught:
        canvas.apply_async()
    # naming the setting that bounds delays where they wait
    assert f"exceeds {SETTING[bound]}" in str(caught.value)
    # And the broker holds no message: nothing was published
    assert broker.dbsize() == 0, broker.keys("*")


def test_task_apply_async_with_a_link_is_refused(setup: tuple[Any, redis.Redis]) -> None:
    add, broker = setup
    with pytest.raises(CountdownTooLongError):
        add.apply_async((1,), link=add.s().set(countdown=TOO_LONG))
    assert broker.dbsize() == 0


def test_call_time_countdown_on_a_group_is_refused(setup: tuple[Any, redis.Redis]) -> None:
    add, broker = setup
    with pytest.raises(CountdownTooLongError):
        group(add.s(1), add.s(2)).apply_async(countdown=TOO_LONG)
    assert broker.dbsize() == 0


def test_map_starmap_and_chunks_are_checked_where_they_publish(
    setup: tuple[Any, redis.Redis],
) -> None:
    """``xmap``/``xstarmap``/``chunks`` publish one message per map task (``celery.map`` /
    ``celery.starmap``); the task inside is called in the worker, never published, so the
    delays that matter are the ones on those messages."""
    add, broker = setup
    pairs = [(i, i) for i in range(6)]
    for make in (
        lambda: add.map([1, 2]).set(countdown=TOO_LONG),
        lambda: add.starmap(pairs).set(countdown=TOO_LONG),
        lambda: group(add.chunks(pairs, 2).group().tasks[0].set(countdown=TOO_LONG)),
    ):
        with pytest.raises(CountdownTooLongError):
            make().apply_async()
    with pytest.raises(CountdownTooLongError):
        add.chunks(pairs, 2).apply_async(countdown=TOO_LONG)
    assert broker.dbsize() == 0, broker.keys("*")
    add.chunks(pairs, 2).apply_async(countdown=LIMIT_S)
    assert broker.dbsize() > 0, "within the limit, the chunks were published"


def test_canvas_within_the_limit_is_sent(setup: tuple[Any, redis.Redis]) -> None:
    add, broker = setup
    chain(add.s(1, 2), add.s(3).set(countdown=LIMIT_S)).apply_async()
    assert broker.dbsize() > 0, "the first link was published"


def test_delay_set_takes_a_canvas_beyond_max_countdown(
    setup: tuple[Any, redis.Redis], bound: str
) -> None:
    add, broker = setup
    canvas = chain(add.s(1, 2), add.s(3)).set(countdown=BEYOND_COUNTDOWN)
    if bound == "delay set":
        # Given the delay set, When a canvas waits beyond tasks.max_countdown_s
        canvas.apply_async()
        # Then it is accepted and its first message waits in the delay set
        delayed = broker.keys("_celery_kit.delayed.*")
        assert len(delayed) == 1, broker.keys("*")
        assert broker.zcard(delayed[0]) == 1
    else:
        with pytest.raises(CountdownTooLongError, match=r"tasks\.max_countdown_s"):
            canvas.apply_async()
        assert broker.dbsize() == 0


def test_retry_with_a_too_long_countdown_raises_a_catchable_error(
    kit_redis_url: str, kit_worker, bound: str
) -> None:
    env = {
        "CELERY_BROKER_URL": kit_redis_url,
        "CELERY_RESULT_BACKEND": kit_redis_url,
        "KIT_TEST_STATE_URL": kit_redis_url,
        "CELERY_KIT_TASKS__MAX_COUNTDOWN_S": str(LIMIT_S),
        **BOUNDS[bound],
    }
    kit_worker("kit_basic", env=env, pythonpath=[APPS])
    app = make_app("kit_basic", settings=Settings(_environ=env))
    # Given a task that retries with a countdown beyond tasks.max_countdown_s
    result = app.send_task("kit_basic.retry_too_late", (TOO_LONG,))
    # Then the task body itself can catch CountdownTooLongError (not a Reject)
    assert result.get(timeout=30) == "caught CountdownTooLongError"
