"""Worker app for the reliability tests: retries, DLQ, idempotency, locks, rate limits.

Built by ``make_app`` from the environment (``CELERY_BROKER_URL`` and ``CELERY_KIT_*``).
Tasks record what happened in Redis at ``KIT_TEST_STATE_URL`` (times from this machine's
clock, pids, counters) so tests can check effects without trusting the task's own result.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import redis
from celery.signals import task_postrun, task_retry

from celery_kit import make_app
from celery_kit.tasks import PermanentError, RetryingTask, TransientError

app = make_app("kit_reliability")
#: Shrunk so the tests run in seconds (set per test through the environment).
RATE = os.environ.get("KIT_TEST_RATE", "10/s")


def state() -> redis.Redis:
    return redis.Redis.from_url(os.environ["KIT_TEST_STATE_URL"])


@task_retry.connect(weak=False, dispatch_uid="kit_reliability.record_retry")
def _record_retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    """Record the countdown each retry chose (pool process, after the retry was sent)."""
    if request is not None and reason is not None and reason.when is not None:
        state().rpush(f"countdowns:{request.id}", float(reason.when))


@app.task(
    name="kit_reliability.flaky", shared=False, base=RetryingTask, bind=True, backoff_base_s=0.2
)
def flaky(self: Any, key: str, fail_times: int) -> str:
    """Fail transiently ``fail_times`` times, then succeed."""
    r = state()
    attempt = int(r.incr(f"attempts:{key}"))
    r.rpush(f"started:{key}", time.time())
    if attempt <= fail_times:
        raise TransientError(f"attempt {attempt} of {key} failed")
    return "ok"


@app.task(name="kit_reliability.permanent", shared=False, base=RetryingTask)
def permanent(key: str) -> str:
    """Fail permanently until ``fixed:<key>`` is set in the state Redis."""
    r = state()
    r.incr(f"attempts:{key}")
    if not r.exists(f"fixed:{key}"):
        raise PermanentError(f"{key}: the account does not exist")
    return "fixed"


@app.task(
    name="kit_reliability.charge",
    shared=False,
    idempotency_key="charge:{order_id}",
    dedupe_enqueue=True,
)
def charge(order_id: str, sleep_s: float) -> dict[str, Any]:
    """Count body starts and completed effects; sleep in between."""
    r = state()
    r.incr(f"starts:{order_id}")
    r.rpush(f"pids:{order_id}", os.getpid())
    r.rpush(f"started-at:{order_id}", time.time())
    time.sleep(sleep_s)
    r.incr(f"effects:{order_id}")
    return {"charged": order_id, "pid": os.getpid()}


@app.task(
    name="kit_reliability.charge_once_killed", shared=False, idempotency_key="charge:{order_id}"
)
def charge_once_killed(order_id: str, when: str, sleep_s: float = 0.0) -> dict[str, Any]:
    """Like ``charge``; the first run's pool process is SIGKILLed ``when`` = "before" the
    completion is written (right after the effect) or "after" (``_die_after_completion``);
    "never" just sleeps ``sleep_s`` before its effect (for Redis outages)."""
    r = state()
    r.incr(f"starts:{order_id}")
    r.rpush(f"pids:{order_id}", os.getpid())
    r.rpush(f"started-at:{order_id}", time.time())
    time.sleep(sleep_s)
    r.incr(f"effects:{order_id}")
    if when == "before" and r.incr(f"kills:{order_id}") == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"charged": order_id, "pid": os.getpid()}


@task_postrun.connect(weak=False, dispatch_uid="kit_reliability.die")
def _die_after_completion(task: Any = None, args: Any = None, **_: Any) -> None:
    """After the body returned: once the completion is in Redis (another connection sees it)
    and before its reply is read or the result reaches the main process, SIGKILL."""
    if getattr(task, "name", None) != "kit_reliability.charge_once_killed" or args[1] != "after":
        return
    order_id = args[0]
    r = state()
    if r.incr(f"kills:{order_id}") != 1:
        return
    kit = redis.Redis.from_url(os.environ["CELERY_KIT_REDIS__URL"])
    key = f"celery_kit:idem:kit_reliability.charge_once_killed:charge:{order_id}"
    deadline = time.monotonic() + 10
    while kit.hget(key, "s") != b"d" and time.monotonic() < deadline:
        time.sleep(0.001)
    r.set(f"completion-seen:{order_id}", kit.hget(key, "s") or b"")
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="kit_reliability.locked", shared=False, lock="job:{name}")
def locked(name: str, hold_s: float) -> int:
    """Hold the lock ``job:<name>`` for ``hold_s`` seconds."""
    r = state()
    r.rpush(f"lock-pids:{name}", os.getpid())
    r.rpush(f"lock-start:{name}", time.time())
    time.sleep(hold_s)
    r.rpush(f"lock-done:{name}", time.time())
    return os.getpid()


@app.task(name="kit_reliability.rated", shared=False, rate=RATE)
def rated(i: int) -> int:
    """Record the start time of a rate-limited no-op."""
    state().rpush("rated:starts", repr(time.time()))
    return i


@app.task(name="kit_reliability.suicide", shared=False)
def suicide(key: str) -> None:
    """Kill the pool process running it, every time (a poison message)."""
    state().incr(f"runs:{key}")
    os.kill(os.getpid(), signal.SIGKILL)
