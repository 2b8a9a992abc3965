"""RetryingTask and the dead-letter queue on a real worker (must-show 1).

Transient failures are retried with bounded full-jitter backoff until success; a permanent
error is not retried and lands in the DLQ, and ``celery kit dlq replay`` re-runs it.
"""

from __future__ import annotations

import pytest
import redis

from celery_kit.tasks import PermanentError, TransientError
from celery_kit.testing import wait_until as wait_for
from tests.integration.support.reliability import APP, APPS, dlq_entries, kit_cli, kit_env, producer

pytestmark = pytest.mark.timeout(150)

BASE_S, CAP_S = 0.2, 2.0  # backoff_base_s of kit_reliability.flaky, tasks.retry_backoff_max_s


@pytest.fixture
def env(kit_redis_url: str) -> dict[str, str]:
    return kit_env(kit_redis_url, kit_redis_url, RETRY__MAX_RETRIES="3")


def floats(client: redis.Redis, key: str) -> list[float]:
    return [float(v) for v in client.lrange(key, 0, -1)]


def test_transient_failures_are_retried_with_bounded_backoff_then_succeed(
    env: dict[str, str], kit_redis_url: str, kit_worker
) -> None:
    # Given a worker, and a task that fails transiently 3 times (max_retries = 3)
    kit_worker(APP, env=env, pythonpath=[APPS])
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    # When it is sent
    result = app.send_task("kit_reliability.flaky", args=["k", 3])
    # Then it ends SUCCESS on the 4th attempt
    assert result.get(timeout=60) == "ok"
    assert result.state == "SUCCESS"
    assert int(state.get("attempts:k") or 0) == 4
    # and each retry's countdown was full jitter under min(cap, base * 2**n)
    countdowns = floats(state, f"countdowns:{result.id}")
    starts = floats(state, "started:k")
    assert len(countdowns) == 3
    assert len(starts) == 4
    for n, countdown in enumerate(countdowns):
        assert 0.0 <= countdown <= min(CAP_S, BASE_S * 2**n), (n, countdown)
        # and the retry really waited for it (lower bound only; ETA is set after the failure)
        assert starts[n + 1] - starts[n] >= countdown - 0.01, (n, countdown, starts)
    # and nothing was dead-lettered
    assert dlq_entries(env) == []


def test_exhausted_retries_land_in_the_dlq(
    env: dict[str, str], kit_redis_url: str, kit_worker
) -> None:
    kit_worker(APP, env=env, pythonpath=[APPS])
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    # When a task keeps failing transiently
    result = app.send_task("kit_reliability.flaky", args=["e", 100])
    # Then it fails after 1 + max_retries attempts
    with pytest.raises(TransientError, match="attempt 4 of e failed"):
        result.get(timeout=60)
    assert int(state.get("attempts:e") or 0) == 4
    # and is dead-lettered with what an operator needs
    (entry,) = wait_for(lambda: dlq_entries(env), timeout_s=10, what="the DLQ entry")
    assert entry["id"] == result.id
    assert (entry["task"], entry["reason"], entry["attempts"]) == (
        "kit_reliability.flaky",
        "retries_exhausted",
        4,
    )
    assert entry["args"] == ["e", 100]
    assert entry["kwargs"] == {}
    assert entry["exception_type"] == "celery_kit.tasks.TransientError"
    assert "attempt 4 of e failed" in entry["traceback"]
    assert entry["first_attempt_at"] <= entry["dead_lettered_at"]
    assert entry["queue"] == "default"


def test_permanent_error_is_not_retried_and_replay_reruns_it_after_the_fix(
    env: dict[str, str], kit_redis_url: str, kit_worker
) -> None:
    worker = kit_worker(APP, env=env, pythonpath=[APPS])
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    # When a task raises PermanentError
    result = app.send_task("kit_reliability.permanent", args=["p"], kwargs={})
    with pytest.raises(PermanentError, match="does not exist"):
        result.get(timeout=30)
    # Then it ran once (no retry) and is in the DLQ
    assert int(state.get("attempts:p") or 0) == 1
    assert "retry:" not in worker.log_text()
    (entry,) = dlq_entries(env, "--task", "kit_reliability.permanent")
    assert (entry["id"], entry["reason"], entry["attempts"]) == (result.id, "permanent", 1)
    shown = kit_cli(env, "dlq", "show", result.id)
    assert shown.returncode == 0, shown.stderr
    assert "PermanentError" in shown.stdout
    # When the cause is fixed and the entry replayed
    state.set("fixed:p", 1)
    replayed = kit_cli(env, "dlq", "replay", result.id)
    assert replayed.returncode == 0, replayed.stderr
    # Then the same task id runs again and succeeds, and the entry is gone. (Read through
    # a fresh app, like an operator's poller: this process's result consumer still holds
    # the first run's FAILURE message for the id; replay forgot it in the backend.)
    assert producer(env).AsyncResult(result.id).get(timeout=30) == "fixed"
    assert int(state.get("attempts:p") or 0) == 2
    assert dlq_entries(env) == []
    assert kit_cli(env, "dlq", "show", result.id).returncode != 0


def test_replay_all_of_one_task_and_purge(
    env: dict[str, str], kit_redis_url: str, kit_worker
) -> None:
    kit_worker(APP, env=env, pythonpath=[APPS])
    app, state = producer(env), redis.Redis.from_url(kit_redis_url)
    failed = [app.send_task("kit_reliability.permanent", args=[f"r{i}"]) for i in range(3)]
    other = app.send_task("kit_reliability.flaky", args=["o", 100])
    for r in failed:
        with pytest.raises(PermanentError):
            r.get(timeout=30)
    with pytest.raises(TransientError):
        other.get(timeout=60)
    assert len(dlq_entries(env)) == 4
    # Replaying --all of one task leaves the other task's entry alone
    for i in range(3):
        state.set(f"fixed:r{i}", 1)
    done = kit_cli(env, "dlq", "replay", "--all", "--task", "kit_reliability.permanent")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("replayed") == 3
    poller = producer(env)  # a fresh result consumer, as above
    assert [poller.AsyncResult(r.id).get(timeout=30) for r in failed] == ["fixed"] * 3
    assert [e["task"] for e in dlq_entries(env)] == ["kit_reliability.flaky"]
    # and purge empties the store
    purged = kit_cli(env, "dlq", "purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert "purged 1" in purged.stdout
    assert dlq_entries(env) == []
