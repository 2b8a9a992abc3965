"""Task runs counted without Celery signals: ``KitTask`` calls the app's run counter where
Celery would send ``task_prerun``/``task_success``; other tasks keep the receivers.

Each test runs Celery's own tracer (``build_tracer``), as a pool process does, so the counts
come from the real call order (``__call__``, storing the result, ``on_success``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from celery import Task, signals
from celery.app.trace import build_tracer

from celery_kit import Settings, make_app
from celery_kit.observability.metrics import metrics_of, metrics_state
from celery_kit.observability.runs import narrow_run_receivers, receiver_uid
from celery_kit.topology.publish import PUBLISHED_AT_HEADER

DEAD = "redis://127.0.0.1:1/0"
HOST = "w1@host"


def metrics_app() -> Any:
    """Results in memory (the tracer stores each one, as in a worker)."""
    app = make_app("t", settings=Settings(_environ={}, broker_url=DEAD, metrics={"enabled": True}))
    app.conf.result_backend = "cache+memory://"
    return app


def run(app: Any, name: str, *args: Any, queue: str = "critical", **request: Any) -> Any:
    """One run of ``name`` through Celery's tracer, as in a pool process."""
    task = app.tasks[name]
    tracer = build_tracer(name, task, app.loader, HOST, app=app)
    req = {
        "id": uuid.uuid4().hex,
        "task": name,
        "hostname": HOST,
        "is_eager": False,
        "delivery_info": {"routing_key": queue, "exchange": ""},
        "args": args,
        "kwargs": {},
        **request,
    }
    return tracer(req["id"], args, {}, req)


def sample(app: Any, metric: str, name: str, queue: str = "critical", **labels: str) -> float:
    labels = {"name": name, "hostname": HOST, "queue_name": queue, **labels}
    found = metrics_of(app).registry.get_sample_value(metric, labels)
    return 0.0 if found is None else found


def ours(app: Any, signal: Any, name: str) -> set[int | None]:
    """Senders (``None``: any) of ``app``'s metrics receivers connected to ``signal``."""
    uid = receiver_uid(app, name)
    keys = [key for (key, _sender), _receiver in signal.receivers]
    return {None if key == uid else int(key.rsplit(".", 1)[1]) for key in keys if uid in key}


def test_kit_tasks_count_started_succeeded_runtime_and_wait_without_receivers() -> None:
    app = metrics_app()

    @app.task(name="t.kit", shared=False)
    def kit() -> int:
        return 1

    @app.task(name="t.plain", base=Task, shared=False)
    def plain() -> int:
        return 2

    # Before a worker starts (e.g. apply()), the receivers get every task: a KitTask that
    # counts itself is skipped there, so it is counted once
    state = metrics_state(app)
    assert state is not None
    assert state.run_receivers is not None
    assert ours(app, signals.task_prerun, "task_prerun") == {None}
    run(app, "t.kit", **{PUBLISHED_AT_HEADER: time.time() - 3.0})
    assert sample(app, "celery_task_started_total", "t.kit") == 1
    assert sample(app, "celery_task_succeeded_total", "t.kit") == 1

    # Given the worker start: receivers kept for the task that is no KitTask only
    assert narrow_run_receivers(app, *state.run_receivers) == 1
    assert ours(app, signals.task_prerun, "task_prerun") == {id(app.tasks["t.plain"])}
    assert ours(app, signals.task_success, "task_success") == {id(app.tasks["t.plain"])}

    # When the KitTask runs once more and the other one twice, published three seconds ago
    for name in ("t.kit", "t.plain", "t.plain"):
        run(app, name, **{PUBLISHED_AT_HEADER: time.time() - 3.0})

    # Then both are counted alike, one through the run counter, one through receivers
    for name in ("t.kit", "t.plain"):
        assert sample(app, "celery_task_started_total", name) == 2
        assert sample(app, "celery_task_succeeded_total", name) == 2
        assert sample(app, "celery_task_runtime_count", name) == 2
        assert sample(app, "celery_task_queue_wait_time_bucket", name, le="2.5") == 0
        assert sample(app, "celery_task_queue_wait_time_bucket", name, le="5.0") == 2


def test_an_on_success_without_super_still_counts_each_success_once() -> None:
    app = metrics_app()
    seen: list[str] = []

    class Quiet(app.Task):  # type: ignore[name-defined,misc]
        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            seen.append("quiet")  # no super()

    class Polite(Quiet):
        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            seen.append("polite")
            super().on_success(retval, task_id, args, kwargs)

    @app.task(name="t.quiet", base=Quiet, shared=False)
    def quiet() -> None:
        return None

    @app.task(name="t.polite", base=Polite, shared=False)
    def polite() -> None:
        return None

    run(app, "t.quiet")
    run(app, "t.polite")
    assert seen == ["quiet", "polite", "quiet"]
    assert sample(app, "celery_task_succeeded_total", "t.quiet") == 1
    assert sample(app, "celery_task_succeeded_total", "t.polite") == 1
    assert sample(app, "celery_task_runtime_count", "t.polite") == 1


def test_a_failure_or_a_result_that_cannot_be_stored_is_no_success() -> None:
    app = metrics_app()

    @app.task(name="t.fail", shared=False)
    def fail() -> None:
        raise KeyError("x")

    @app.task(name="t.unstorable", shared=False)
    def unstorable() -> object:
        return object()  # the JSON result serializer refuses it: Celery records a failure

    run(app, "t.fail")
    run(app, "t.unstorable")
    for name, exception in (("t.fail", "KeyError"), ("t.unstorable", "EncodeError")):
        assert sample(app, "celery_task_started_total", name) == 1
        assert sample(app, "celery_task_succeeded_total", name) == 0
        assert sample(app, "celery_task_failed_total", name, exception=exception) == 1


def test_a_direct_call_is_no_run_and_other_apps_count_nothing_here() -> None:
    app, other = metrics_app(), metrics_app()

    @app.task(name="t.work", shared=False)
    def work() -> int:
        return 3

    assert work() == 3  # a plain function call: Celery sends no signal either
    assert sample(app, "celery_task_started_total", "t.work") == 0

    @other.task(name="t.work", shared=False)
    def work_other() -> int:
        return 4

    run(other, "t.work")
    assert sample(app, "celery_task_started_total", "t.work") == 0
    assert sample(other, "celery_task_started_total", "t.work") == 1


def test_a_failing_counter_never_fails_the_task(caplog: pytest.LogCaptureFixture) -> None:
    app = metrics_app()

    @app.task(name="t.work", shared=False)
    def work() -> int:
        return 5

    state = metrics_state(app)
    assert state is not None
    broken = state.kit_metrics()
    broken.started = None  # child() of None raises inside the counter

    assert run(app, "t.work").retval == 5
    assert "counting a task start failed" in caplog.text


def test_kit_tasks_declare_that_they_count_their_own_runs() -> None:
    from celery_kit.observability.runs import counts_own_runs
    from celery_kit.state import COUNTS_OWN_RUNS
    from celery_kit.tasks import KitTask

    app = metrics_app()

    @app.task(name="t.plain", base=Task, shared=False)
    def plain() -> None:
        return None

    assert getattr(KitTask, COUNTS_OWN_RUNS) is True
    assert counts_own_runs(app.tasks["celery.backend_cleanup"])  # built-ins are KitTasks too
    assert not counts_own_runs(app.tasks["t.plain"])
