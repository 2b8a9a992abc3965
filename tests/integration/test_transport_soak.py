"""Must-show 2: 1,000 tasks while pool processes and whole workers are SIGKILLed again
and again: none lost; with the kit's idempotency helper an effect repeats only when a
kill interrupted its body."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
import redis

from celery_kit.testing import RedisServer, wait_until
from tests.integration.support.transport import APP, APPS, producer, transport_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

TASKS, CONCURRENCY = 1000, 2


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_soak_with_repeated_sigkills_loses_nothing(
    pool: str, kit_redis_server: RedisServer, kit_redis_url: str, kit_worker
) -> None:
    env = transport_env(
        kit_redis_server.url(kit_redis_server.fresh_db()),
        kit_redis_url,
        CELERY_OVERRIDES='{"worker_lost_wait": 1}',
    )
    env["KIT_TEST_EFFECT_SLEEP_S"] = "0.02"
    start = lambda: kit_worker(  # noqa: E731
        APP, env=env, pythonpath=[APPS], pool=pool, concurrency=CONCURRENCY
    )
    workers = [start(), start()]
    state, app = redis.Redis.from_url(kit_redis_url), producer(env)
    for n in range(TASKS):
        app.send_task("kit_transport.effect", args=[n], ignore_result=True)
    rng = random.Random(11)
    interruptions = 0
    while state.hlen("effects") < TASKS * 0.9 and interruptions < 8:
        time.sleep(1.0)
        children = [pid for w in workers for pid in w.pool_pids()] if pool == "prefork" else []
        if children and rng.random() < 0.5:
            os.kill(rng.choice(children), signal.SIGKILL)  # one pool process
            interruptions += 1
        else:
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()  # the whole worker, main process included
            interruptions += CONCURRENCY
            workers.append(start())
    # Then every task ran
    wait_until(lambda: state.hlen("effects") == TASKS, timeout_s=180, what="every effect")
    effects = {int(k): int(v) for k, v in state.hgetall("effects").items()}
    assert sorted(effects) == list(range(TASKS))
    repeated = [n for n, count in effects.items() if count > 1]
    print(f"{pool}: {interruptions} interrupted slots, {len(repeated)} effects repeated")
    # a repeat needs a kill inside that body: at most one per interrupted slot
    assert len(repeated) <= interruptions
    app.close()
