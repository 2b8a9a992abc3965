"""Django Tasks on kit workers: a Django 6 project enqueues, a real ``celery worker`` runs.

Runs in the Django 6 venv (``make test-django6``, part of ``make test``); Django configures
itself once per process, so this module sets up the example project once, on a Redis
database of its own, and flushes it between tests.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

django = pytest.importorskip("django")
if django.VERSION < (6, 0):
    pytest.skip(
        f"django.tasks needs Django >= 6 (installed: {django.get_version()}); these tests run"
        " in the Django 6 venv: `make test-django6` (part of `make test`)",
        allow_module_level=True,
    )

from celery_kit.testing import RedisServer, WorkerFactory, wait_until  # noqa: E402

EXAMPLE = Path(__file__).parents[2] / "examples" / "django_tasks_proj"
pytestmark = pytest.mark.timeout(120)


@dataclass
class Project:
    """The example project, configured in this process, and what its workers need."""

    redis_url: str
    env: dict[str, str]
    client: redis.Redis

    def queued(self, queue: str = "default") -> dict[str, list[dict[str, Any]]]:
        """Messages waiting on Redis, by priority sub-list name."""
        names = [queue, *(f"{queue}:{step}" for step in range(1, 10))]
        found = {
            name: [json.loads(raw) for raw in self.client.lrange(name, 0, -1)] for name in names
        }
        return {name: messages for name, messages in found.items() if messages}


@pytest.fixture(scope="module")
def project(
    kit_redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Project]:
    db = kit_redis_server.fresh_db()
    url = kit_redis_server.url(db)
    env = {
        "DJANGO_SETTINGS_MODULE": "tasksproj.settings",
        "DJANGO_DB_PATH": str(tmp_path_factory.mktemp("django-tasks") / "db.sqlite3"),
        "CELERY_BROKER_URL": url,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.syspath_prepend(str(EXAMPLE))
        patch.syspath_prepend(str(Path(__file__).parent / "apps"))
        django.setup()
        with kit_redis_server.client(db) as client:
            yield Project(url, env, client)


@pytest.fixture
def fresh(project: Project) -> Project:
    project.client.flushdb()
    return project


@pytest.fixture
def start_worker(kit_worker: WorkerFactory, project: Project) -> Callable[..., Any]:
    def start(**extra: Any) -> Any:
        return kit_worker("tasksproj", env=project.env, pythonpath=[EXAMPLE], cwd=EXAMPLE, **extra)

    return start


def finished(task: Any, result_id: str, *, timeout_s: float = 30.0) -> Any:
    """Poll ``get_result`` until Django calls the result finished."""
    seen: list[Any] = []

    def done() -> bool:
        seen[:] = [task.get_result(result_id)]
        return bool(seen[0].is_finished)

    wait_until(done, timeout_s=timeout_s, what=f"result {result_id} finished", every_s=0.1)
    return seen[0]


def test_worker_runs_django_tasks_and_results_map_celery_states(
    fresh: Project, start_worker: Callable[..., Any]
) -> None:
    from django.tasks import TaskResultStatus
    from reports.tasks import add, attempt, double, fail

    # Given tasks enqueued before any worker runs
    ok, bad, ctx, coro = (
        add.enqueue(2, 3),
        fail.enqueue("boom"),
        attempt.enqueue(),
        double.enqueue(21),
    )
    # Then they are READY, with the arguments Django normalised
    waiting = add.get_result(ok.id)
    assert (waiting.status, waiting.args, waiting.is_finished) == (
        TaskResultStatus.READY,
        [2, 3],
        False,
    )
    assert waiting.enqueued_at is not None
    assert waiting.started_at is None

    # When a real kit worker runs them
    worker = start_worker(concurrency=1)
    # Then the successful one is SUCCESSFUL with its value, and timed
    done = finished(add, ok.id)
    assert (done.status, done.return_value, done.attempts) == (TaskResultStatus.SUCCESSFUL, 5, 1)
    assert done.enqueued_at <= done.started_at <= done.finished_at
    assert done.worker_ids == [worker.hostname]
    # And the failing one is FAILED with its error
    failed = finished(fail, bad.id)
    assert failed.status == TaskResultStatus.FAILED
    [error] = failed.errors
    assert error.exception_class is ValueError
    assert "boom" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = failed.return_value
    # And the context task saw the attempt counter, the coroutine task ran
    assert finished(attempt, ctx.id).return_value == {"attempt": 1, "id": ctx.id}
    assert finished(double, coro.id).return_value == 42


def test_deferred_task_runs_at_or_after_run_after(
    fresh: Project, start_worker: Callable[..., Any]
) -> None:
    from django.tasks import TaskResultStatus
    from django.utils import timezone
    from reports.tasks import stamp

    start_worker(concurrency=1)
    run_after = timezone.now() + timedelta(seconds=3)
    # When a task is enqueued to run 3 s from now
    result = stamp.using(run_after=run_after).enqueue("later")
    # Then it is not run early, and then runs at or after run_after
    time.sleep(1.0)
    assert stamp.get_result(result.id).status == TaskResultStatus.READY
    done = finished(stamp, result.id)
    assert done.return_value["ran_at"] >= run_after.timestamp()
    assert done.task.run_after == run_after


def test_too_long_run_after_and_unknown_queue_are_refused_at_enqueue(fresh: Project) -> None:
    from django.tasks.exceptions import InvalidTask
    from django.utils import timezone
    from reports.tasks import add

    with pytest.raises(InvalidTask, match=r"run_after: .*exceeds tasks\.max_countdown_s"):
        add.using(run_after=timezone.now() + timedelta(days=30)).enqueue(1, 2)
    with pytest.raises(
        InvalidTask, match=r"queue_name 'nope' is not declared in the kit's \[queues\]"
    ):
        add.using(queue_name="nope").enqueue(1, 2)
    assert fresh.queued() == {}


def test_priorities_map_onto_kit_levels_and_order_consumption(
    fresh: Project, start_worker: Callable[..., Any]
) -> None:
    from reports.tasks import stamp

    # Given three tasks enqueued lowest first, with no worker
    ids = {p: stamp.using(priority=p).enqueue(str(p)).id for p in (-100, 0, 100)}
    # Then Django 100 / 0 / -100 are kit 9 / 5 / 0: Redis lists default, default:4, default:9
    placed = {name: [m["headers"]["id"] for m in msgs] for name, msgs in fresh.queued().items()}
    assert placed == {"default": [ids[100]], "default:4": [ids[0]], "default:9": [ids[-100]]}
    # When one single-process worker consumes them, most urgent first
    start_worker(concurrency=1)
    ran = {p: finished(stamp, i).return_value["ran_at"] for p, i in ids.items()}
    assert ran[100] < ran[0] < ran[-100]


def test_rolled_back_transaction_sends_nothing_and_commit_sends_once(fresh: Project) -> None:
    from django.db import transaction
    from django.tasks.exceptions import TaskResultDoesNotExist
    from reports.tasks import add

    # When the enqueue happens in a transaction that rolls back
    rolled: list[Any] = []

    def enqueue_then_fail() -> None:
        with transaction.atomic():
            rolled.append(add.enqueue(1, 1))
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        enqueue_then_fail()
    # Then nothing was sent and there is no result to read
    assert fresh.queued() == {}
    with pytest.raises(TaskResultDoesNotExist):
        add.get_result(rolled[0].id)
    # When it happens in one that commits: nothing before the commit, one message after
    with transaction.atomic():
        kept = add.enqueue(1, 2)
        assert fresh.queued() == {}
    [[message]] = fresh.queued().values()
    assert message["headers"]["id"] == kept.id


def test_pool_child_killed_mid_task_redelivers_and_attempt_counts_two(
    fresh: Project, start_worker: Callable[..., Any]
) -> None:
    from django.tasks import TaskResultStatus
    from reports.tasks import slow_first_attempt

    worker = start_worker(concurrency=1)
    result = slow_first_attempt.enqueue(30)
    # When the pool child is SIGKILLed while the first attempt runs
    wait_until(
        lambda: slow_first_attempt.get_result(result.id).status == TaskResultStatus.RUNNING,
        timeout_s=20,
        what="first attempt running",
    )
    [child] = worker.pool_pids()
    os.kill(child, signal.SIGKILL)
    # Then the message is redelivered (acks_late + reject_on_worker_lost) and the second
    # attempt sees attempt == 2, on record in the result
    done = finished(slow_first_attempt, result.id)
    assert (done.status, done.return_value, done.attempts) == (TaskResultStatus.SUCCESSFUL, 2, 2)


def test_kit_task_options_reach_the_celery_task(
    fresh: Project, start_worker: Callable[..., Any]
) -> None:
    from reports.tasks import once

    start_worker(concurrency=1)
    # TASK_OPTIONS gives reports.tasks.once an idempotency key: the repeat returns the
    # first run's stored result instead of running the body again
    first = finished(once, once.enqueue("k1").id).return_value
    second = finished(once, once.enqueue("k1").id).return_value
    other = finished(once, once.enqueue("k2").id).return_value
    assert first == second != other
    if django.VERSION >= (6, 1):
        from reports.tasks import locked_once

        a = finished(locked_once, locked_once.enqueue("x").id).return_value
        assert finished(locked_once, locked_once.enqueue("x").id).return_value == a


def test_feature_flags_and_missing_result_backend(fresh: Project) -> None:
    from django.tasks import task_backends
    from django.tasks.exceptions import InvalidTaskBackend

    from celery_kit.exceptions import ResultBackendMissingError
    from celery_kit.integrations.django_tasks import CeleryKitBackend

    backend = task_backends["default"]
    flags = ("supports_defer", "supports_priority", "supports_async_task", "supports_get_result")
    assert [getattr(backend, f) for f in flags] == [True, True, True, True]
    # An app whose results are disabled: the flag says so, get_result says what to set
    no_results = CeleryKitBackend("nores", {"OPTIONS": {"APP": "django_tasks_apps:NO_RESULTS"}})
    assert no_results.supports_get_result is False
    with pytest.raises(ResultBackendMissingError, match="set result_backend"):
        no_results.get_result("any")
    with pytest.raises(InvalidTaskBackend, match=r"OPTIONS\['APP'\]"):
        CeleryKitBackend("x", {"OPTIONS": {}})
    with pytest.raises(InvalidTaskBackend, match="not declared in the kit's"):
        CeleryKitBackend("x", {"QUEUES": ["elsewhere"], "OPTIONS": {"APP": "tasksproj.celery:app"}})
    assert sys.modules["tasksproj.celery"].app is backend.app


def test_async_enqueue_and_get_result(fresh: Project, start_worker: Callable[..., Any]) -> None:
    import asyncio

    from django.tasks import TaskResultStatus
    from reports.tasks import add

    start_worker(concurrency=1)

    async def enqueue_then_wait() -> Any:
        result = await add.aenqueue(20, 22)
        for _ in range(300):
            got = await add.aget_result(result.id)
            if got.is_finished:
                return got
            await asyncio.sleep(0.1)
        raise AssertionError("not finished")

    done = asyncio.run(enqueue_then_wait())
    assert (done.status, done.return_value) == (TaskResultStatus.SUCCESSFUL, 42)


def test_malformed_arguments_are_refused_before_anything_is_sent(fresh: Project) -> None:
    from django.db import transaction
    from reports.tasks import add

    with pytest.raises(TypeError):
        add.enqueue(object(), 1)  # not JSON: Django refuses it when building the result
    with transaction.atomic(), pytest.raises(TypeError):
        add.enqueue(1, 2, 3)  # the task's signature: checked at enqueue, not at commit
    assert fresh.queued() == {}


def test_unreachable_broker_or_result_backend_raises_at_enqueue(
    fresh: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import django_tasks_apps
    from django.db import transaction
    from django.test import override_settings
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from reports.tasks import add

    from celery_kit import Settings, make_app

    dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    monkeypatch.delenv("CELERY_BROKER_URL")  # Celery would prefer it over broker_url
    settings = Settings(_environ={}, broker_url=dead, result_backend=fresh.redis_url)
    monkeypatch.setattr(django_tasks_apps, "DEAD_BROKER", make_app("b", settings=settings))
    # Celery retries a Redis result backend 20 times, a second apart; a short policy here
    settings = Settings(
        _environ={},
        broker_url=fresh.redis_url,
        result_backend=dead,
        celery_overrides={"result_backend_transport_options": {"retry_policy": {"max_retries": 1}}},
    )
    monkeypatch.setattr(django_tasks_apps, "DEAD_RESULTS", make_app("r", settings=settings))
    backend = "celery_kit.integrations.django_tasks.CeleryKitBackend"
    tasks = {
        alias: {"BACKEND": backend, "OPTIONS": {"APP": f"django_tasks_apps:{name}"}}
        for alias, name in (("default", "DEAD_BROKER"), ("dead_results", "DEAD_RESULTS"))
    }
    with override_settings(TASKS=tasks):
        # broker down, outside a transaction: enqueue() raises, after Celery's publish retries
        with pytest.raises(OperationalError):
            add.enqueue(1, 2)
        # inside one: the transaction commits, then the publish fails out of atomic()
        with pytest.raises(OperationalError), transaction.atomic():
            add.enqueue(1, 2)
        # result backend down: the envelope cannot be written, nothing is published
        with pytest.raises(RedisConnectionError):
            add.using(backend="dead_results").enqueue(1, 2)
    assert fresh.queued() == {}
