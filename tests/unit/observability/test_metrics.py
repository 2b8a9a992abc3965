"""Metrics without sockets: names and labels, receivers called directly, the directory lifecycle.

Anything that needs prometheus_client in multiprocess mode runs in a fresh interpreter
(the mode is chosen when prometheus_client is first imported).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Task
from celery.exceptions import TimeLimitExceeded
from kombu import Queue
from prometheus_client import CollectorRegistry

from celery_kit import ConfigError, Settings, make_app
from celery_kit.config import MetricsSettings
from celery_kit.observability.depth import redis_list_names
from celery_kit.observability.hooks import _Hooks
from celery_kit.observability.metrics import UNREGISTERED, KitMetrics, metrics_of, metrics_state
from celery_kit.observability.multiproc import clean_multiprocess_dir, worker_environ
from celery_kit.topology.publish import PUBLISHED_AT_HEADER, wrap_sender

DEAD = "redis://127.0.0.1:1/0"


def metrics_app(**metrics: Any) -> Any:
    settings = Settings(_environ={}, broker_url=DEAD, metrics={"enabled": True, **metrics})
    app = make_app("t", settings=settings)
    return app


def sample(app: Any, metric: str, /, **labels: str) -> float | None:
    return metrics_of(app).registry.get_sample_value(metric, labels)


# -- names, labels, settings ---------------------------------------------------------------


def test_names_and_labels_follow_celery_exporter_with_prefix_and_static_labels() -> None:
    registry = CollectorRegistry()
    m = KitMetrics(MetricsSettings(prefix="myapp", labels={"env": "prod"}), registry=registry)
    m.child(m.sent, "t.add", "web-1", "default").inc()
    m.child(m.failed, "t.add", "w@h", "ValueError", "default").inc(2)
    m.child(m.runtime, "t.add", "w@h", "default").observe(0.3)
    m.child(m.queue_length, "default").set(7)
    base = {"name": "t.add", "queue_name": "default", "env": "prod"}
    assert registry.get_sample_value("myapp_task_sent_total", {**base, "hostname": "web-1"}) == 1
    failed = {**base, "hostname": "w@h", "exception": "ValueError"}
    assert registry.get_sample_value("myapp_task_failed_total", failed) == 2
    assert registry.get_sample_value("myapp_task_runtime_count", {**base, "hostname": "w@h"}) == 1
    assert (
        registry.get_sample_value("myapp_queue_length", {"queue_name": "default", "env": "prod"})
        == 7
    )
    names = {metric.name for metric in registry.collect()}
    for what in ("sent", "received", "started", "succeeded", "failed", "rejected", "revoked"):
        assert f"myapp_task_{what}" in names
    assert {"myapp_task_retried", "myapp_task_runtime", "myapp_task_queue_wait_time"} <= names
    assert {"myapp_worker_up", "myapp_worker_tasks_active", "myapp_queue_length"} <= names


def test_every_gauge_declares_a_multiprocess_mode() -> None:
    m = KitMetrics(MetricsSettings(), registry=CollectorRegistry())
    gauges = [m.worker_up, m.tasks_active, m.queue_length, m.queue_oldest_age, m.queue_depth]
    gauges += [m.queue_length_by_priority, m.dlq_entries]
    assert all(g._multiprocess_mode != "all" for g in gauges)


@pytest.mark.parametrize(
    ("metrics", "match"),
    [
        ({"labels": {"queue_name": "x"}}, "label of the kit's own metrics"),
        ({"labels": {"bad-name": "x"}}, "not a valid Prometheus label name"),
        ({"runtime_buckets_s": [1.0, 0.5]}, "strictly increasing"),
        ({"prefix": "9bad"}, "prefix"),
    ],
)
def test_bad_metrics_settings_are_refused(metrics: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Settings(_environ={}, metrics=metrics)


def test_metrics_of_an_app_without_metrics_says_how_to_enable() -> None:
    app = make_app("t", settings=Settings(_environ={}, broker_url=DEAD))
    with pytest.raises(ConfigError, match=r"metrics\.enabled"):
        metrics_of(app)


def test_redis_list_names_cover_every_priority_step() -> None:
    assert redis_list_names("q", sep=":", priority_steps=range(10)) == ["q"] + [
        f"q:{n}" for n in range(1, 10)
    ]
    assert redis_list_names("q", sep="\x06\x16", priority_steps=[0, 3, 6, 9])[1] == "q\x06\x163"


# -- receivers, called directly ------------------------------------------------------------


@pytest.fixture
def app() -> Any:
    return metrics_app()


def _task(app: Any, name: str = "t.work") -> Any:
    # no KitTask: the task_prerun/task_success receivers count only tasks that do not count
    # their own runs (KitTasks do: test_run_counts.py)
    @app.task(name=name, base=Task, shared=False)
    def work() -> None:
        return None

    return work


def _push(task: Any, **request: Any) -> None:
    task.push_request(
        id=request.pop("id", "id-1"),
        hostname="w1@host",
        delivery_info={"routing_key": "critical"},
        **request,
    )


def test_child_receivers_count_started_succeeded_runtime_and_wait(app: Any) -> None:
    task, hooks = _task(app), _Hooks(app)
    _push(task, **{PUBLISHED_AT_HEADER: time.time() - 3.0})
    try:
        hooks.on_prerun(sender=task, task=task)
        hooks.on_success(sender=task, runtime=0.2)
    finally:
        task.pop_request()
    labels = {"name": "t.work", "hostname": "w1@host", "queue_name": "critical"}
    assert sample(app, "celery_task_started_total", **labels) == 1
    assert sample(app, "celery_task_succeeded_total", **labels) == 1
    assert sample(app, "celery_task_runtime_sum", **labels) == pytest.approx(0.2)
    assert sample(app, "celery_task_queue_wait_time_bucket", le="2.5", **labels) == 0
    assert sample(app, "celery_task_queue_wait_time_bucket", le="5.0", **labels) == 1


def test_wait_time_starts_at_the_eta_not_at_the_publish(app: Any) -> None:
    from datetime import datetime, timezone

    task, hooks = _task(app), _Hooks(app)
    eta = datetime.fromtimestamp(time.time() - 0.01, timezone.utc).isoformat()
    _push(task, eta=eta, **{PUBLISHED_AT_HEADER: time.time() - 600})
    try:
        hooks.on_prerun(sender=task, task=task)
    finally:
        task.pop_request()
    labels = {"name": "t.work", "hostname": "w1@host", "queue_name": "critical"}
    assert sample(app, "celery_task_queue_wait_time_bucket", le="1.0", **labels) == 1


def test_failures_and_retries_carry_exception_class_and_queue(app: Any) -> None:
    task, hooks = _task(app), _Hooks(app)
    _push(task)
    try:
        hooks.on_failure(sender=task, task_id="id-1", exception=KeyError("x"))
    finally:
        task.pop_request()
    request = SimpleNamespace(hostname="w1@host", delivery_info={"routing_key": "low"})
    hooks.on_retry(sender=task, request=request)
    assert (
        sample(
            app,
            "celery_task_failed_total",
            name="t.work",
            hostname="w1@host",
            exception="KeyError",
            queue_name="critical",
        )
        == 1
    )
    assert (
        sample(
            app, "celery_task_retried_total", name="t.work", hostname="w1@host", queue_name="low"
        )
        == 1
    )


def test_main_process_counts_a_hard_time_limit_once_with_its_queue(app: Any) -> None:
    # Celery 5.7 sends task_failure twice for one hard time limit in the main process
    task, hooks = _task(app), _Hooks(app)
    state = metrics_state(app)
    assert state is not None
    state.main_pid, state.hostname = os.getpid(), "w1@host"
    received = SimpleNamespace(
        task=task, name="t.work", id="id-9", delivery_info={"routing_key": "bulk"}
    )
    hooks.on_received(sender=None, request=received)
    exc = TimeLimitExceeded(2.0)
    hooks.on_failure(sender=task, task_id="id-9", exception=exc)  # no request on the stack
    _push(task, id="id-9")
    try:
        hooks.on_failure(sender=task, task_id="id-9", exception=exc)  # the second report
    finally:
        task.pop_request()
    labels = {"name": "t.work", "hostname": "w1@host", "queue_name": "bulk"}
    assert sample(app, "celery_task_received_total", **labels) == 1
    assert sample(app, "celery_task_failed_total", exception="TimeLimitExceeded", **labels) == 1


def test_rejected_and_unknown_messages_never_use_the_senders_task_name(app: Any) -> None:
    hooks = _Hooks(app)
    state = metrics_state(app)
    assert state is not None
    state.hostname = "w1@host"
    consumer = SimpleNamespace(app=app)
    message = SimpleNamespace(
        headers={"task": "attacker.supplied.name.123"}, delivery_info={"routing_key": "default"}
    )
    hooks.on_rejected(sender=consumer, message=message)
    hooks.on_unknown(sender=consumer, message=message)
    labels = {"name": UNREGISTERED, "hostname": "w1@host", "queue_name": "default"}
    # Consumer.on_unknown_message sends exc=None: a message Celery cannot read at all
    assert sample(app, "celery_task_rejected_total", reason="unknown_format", **labels) == 1
    assert sample(app, "celery_task_failed_total", exception="NotRegistered", **labels) == 1


def test_rejections_carry_a_bounded_reason_label(app: Any) -> None:
    from kombu.exceptions import ContentDisallowed

    from celery_kit.exceptions import MalformedMessageError, PoisonMessageError
    from celery_kit.observability.metrics import REJECT_REASONS

    hooks, state = _Hooks(app), metrics_state(app)
    assert state is not None
    state.hostname = "w1@host"
    consumer = SimpleNamespace(app=app)
    message = SimpleNamespace(headers=None, delivery_info={"routing_key": "q"})
    for exc in (
        ContentDisallowed("pickle"),
        ValueError("bad"),
        MalformedMessageError("headers: no id"),
        MalformedMessageError("body: not a list"),
        PoisonMessageError("killed its worker"),
    ):
        hooks.on_rejected(sender=consumer, message=message, exc=exc)
    # a name the sender chose never becomes a label value
    hooks.on_rejected(
        sender=consumer,
        message=SimpleNamespace(headers={"task": ["x"]}, delivery_info={"routing_key": "q"}),
        exc=MalformedMessageError("headers: task is a list"),
    )
    labels = {"name": UNREGISTERED, "hostname": "w1@host", "queue_name": "q"}
    rejected = "celery_task_rejected_total"
    assert sample(app, rejected, reason="content_disallowed", **labels) == 1
    assert sample(app, rejected, reason="invalid", **labels) == 1
    assert sample(app, rejected, reason="malformed", **labels) == 3
    assert sample(app, rejected, reason="worker_lost", **labels) == 1
    assert {"malformed", "worker_lost", "content_disallowed", "invalid"} <= REJECT_REASONS


def test_revoked_is_counted_in_the_main_process(app: Any) -> None:
    task, hooks = _task(app), _Hooks(app)
    state = metrics_state(app)
    assert state is not None
    state.hostname = "w1@host"
    hooks.on_revoked(sender=task, request=SimpleNamespace(delivery_info={"routing_key": "q"}))
    assert (
        sample(app, "celery_task_revoked_total", name="t.work", hostname="w1@host", queue_name="q")
        == 1
    )


def test_receivers_ignore_other_apps_and_never_raise(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    other = metrics_app()
    task, hooks = _task(other), _Hooks(app)
    _push(task)
    try:
        hooks.on_prerun(sender=task, task=task)
    finally:
        task.pop_request()
    assert sample(other, "celery_task_started_total", name="t.work") is None
    assert sample(app, "celery_task_started_total", name="t.work") is None

    class Broken:
        app = property(lambda self: app)
        name = "t.broken"

        @property
        def request(self) -> Any:
            raise RuntimeError("no request")

    hooks.on_success(sender=Broken())
    assert "task_success receiver failed" in caplog.text


# -- publisher side ------------------------------------------------------------------------


def _message() -> Any:
    return SimpleNamespace(headers={"id": "1"}, properties={}, body=(), sent_event=None)


def test_publisher_stamps_the_time_and_counts_sent_by_queue(app: Any) -> None:
    sent: list[Any] = []
    send = wrap_sender(app, lambda *a, **kw: sent.append((a, kw)) or "ok")
    before = time.time()
    message = _message()
    assert send("producer", "t.add", message, None, None, Queue("critical")) == "ok"
    send("producer", "t.add", _message(), None, None, "low")
    send("producer", "t.add", _message(), "", "bulk")
    assert before <= message.headers[PUBLISHED_AT_HEADER] <= time.time()
    state = metrics_state(app)
    assert state is not None
    for queue in ("critical", "low", "bulk"):
        assert (
            sample(
                app,
                "celery_task_sent_total",
                name="t.add",
                hostname=state.hostname,
                queue_name=queue,
            )
            == 1
        )


def test_a_retry_gets_a_fresh_stamp_not_its_requests_old_one(app: Any) -> None:
    seen: dict[str, Any] = {}
    send = wrap_sender(app, lambda *a, **kw: seen.update(kw))
    send("p", "t.add", _message(), None, None, "q", headers={PUBLISHED_AT_HEADER: 1.0})
    assert seen["headers"][PUBLISHED_AT_HEADER] > 1.0


def test_publisher_stamps_even_with_metrics_off() -> None:
    plain = make_app("t", settings=Settings(_environ={}, broker_url=DEAD))
    message = _message()
    wrap_sender(plain, lambda *a, **kw: None)("p", "t.add", message, None, None, "q")
    assert PUBLISHED_AT_HEADER in message.headers


# -- the multiprocess directory ------------------------------------------------------------


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


def test_multiprocess_mode_is_set_up_when_prometheus_client_is_not_imported_yet() -> None:
    done = _python(
        """
        import os, sys
        from celery_kit.config import MetricsSettings
        from celery_kit.observability.multiproc import setup_multiprocess
        assert "prometheus_client" not in sys.modules
        mp = setup_multiprocess(MetricsSettings(enabled=True), single_process=False)
        from prometheus_client import values
        assert values.ValueClass._multiprocess
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == mp.directory and mp.owned
        from celery_kit.observability.multiproc import remove_owned_dir
        remove_owned_dir(mp)
        assert not os.path.exists(mp.directory)
        print("ok")
        """
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_prometheus_client_imported_too_early_refuses_prefork_but_not_solo() -> None:
    done = _python(
        """
        import prometheus_client
        from celery_kit.config import MetricsSettings
        from celery_kit.observability.multiproc import MetricsSetupError, setup_multiprocess
        assert setup_multiprocess(MetricsSettings(), single_process=True).directory is None
        try:
            setup_multiprocess(MetricsSettings(), single_process=False)
        except MetricsSetupError as exc:
            print(exc)
        """
    )
    assert "imported before PROMETHEUS_MULTIPROC_DIR was set" in done.stdout, done.stderr
    assert "python -m celery_kit.launch" in done.stdout


def test_worker_start_removes_every_other_processes_files(tmp_path: Path) -> None:
    for name in ("counter_11.db", "histogram_11.db", "gauge_livemax_12.db", "counter_archive.db"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "counter_99.db").write_bytes(b"mine")
    assert clean_multiprocess_dir(str(tmp_path), keep_pid=99) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_99.db"]


def test_exited_children_are_folded_without_changing_any_value(tmp_path: Path) -> None:
    done = _python(
        """
        import os, glob
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.multiprocess import MultiProcessCollector
        from celery_kit.observability.multiproc import compact_dead_processes
        d = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        c = Counter("jobs_total", "j", ["q"])
        h = Histogram("took", "t", ["q"], buckets=[1, 5])
        g = Gauge("busy", "b", multiprocess_mode="livesum")

        def child(n):
            pid = os.fork()
            if pid == 0:
                c.labels("a").inc(n); h.labels("a").observe(n); g.inc()
                os._exit(0)
            os.waitpid(pid, 0)

        def values():
            r = CollectorRegistry(); MultiProcessCollector(r, path=d)
            return {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for m in r.collect() for s in m.samples}

        for n in (1, 2, 3, 4):
            child(n)
        c.labels("a").inc(10)  # this (live) process
        before = values()
        assert compact_dead_processes(d, min_files=1) == 8
        after = values()
        child(100)  # a later child adds to the archive's totals
        later = values()
        def kept(v):
            return {k: x for k, x in v.items() if k[0] != "busy"}

        print(sorted(os.path.basename(p) for p in glob.glob(d + "/*.db")))
        print(kept(before) == kept(after), before[("jobs_total", (("q", "a"),))],
              later[("jobs_total", (("q", "a"),))], later[("took_count", (("q", "a"),))],
              before[("busy", ())], after[("busy", ())])
        """,
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stderr
    files = ast.literal_eval(lines[0])
    assert "counter_archive.db" in files
    assert "histogram_archive.db" in files
    # the 4 folded children's live-gauge files were dropped (mark_process_dead): ours and
    # the later child's (not swept yet) are left
    assert len([f for f in files if f.startswith("gauge_livesum")]) == 2
    # counters and histograms unchanged; the dead children's live gauge (4 x 1) dropped
    assert lines[1] == "True 20.0 120.0 5.0 4.0 0.0"


def test_worker_environ_names_a_directory_only_when_needed(tmp_path: Path) -> None:
    on = Settings(_environ={}, metrics={"enabled": True, "multiproc_dir": str(tmp_path / "m")})
    assert worker_environ(Settings(_environ={}), {}) == {}
    assert worker_environ(on, {"PROMETHEUS_MULTIPROC_DIR": "/x"}) == {}
    assert worker_environ(on, {}) == {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "m")}
    assert (tmp_path / "m").is_dir()
    fresh = worker_environ(Settings(_environ={}, metrics={"enabled": True}), {})
    assert Path(fresh["PROMETHEUS_MULTIPROC_DIR"]).name.startswith("celery-kit-metrics-")
    os.rmdir(fresh["PROMETHEUS_MULTIPROC_DIR"])


def test_launcher_sets_the_directory_before_anything_imports_prometheus(tmp_path: Path) -> None:
    from celery_kit.observability.launch import prepare_environ

    env: dict[str, str] = {"CELERY_KIT_METRICS__MULTIPROC_DIR": str(tmp_path / "d")}
    assert prepare_environ(env) == str(tmp_path / "d")
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "d")
    keep = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    assert prepare_environ(keep) == str(tmp_path)


@pytest.mark.parametrize(
    "module",
    [
        "celery_kit.observability.metrics",
        "celery_kit.observability.multiproc",
        "celery_kit.observability.exporter",
        "celery_kit.observability.hooks",
        "celery_kit.observability.server",
        "celery_kit.observability.poller",
        "celery_kit.observability.heartbeat",
        "celery_kit.observability.report",
        "celery_kit.tasks.progress",
        "celery_kit.observability.depth",
        "celery_kit.launch",
        "celery_kit.observability.launch",
        "celery_kit.observability.install",
    ],
)
def test_importing_observability_modules_does_nothing(module: str) -> None:
    done = _python(
        f"""
        import os, sys, threading
        before = dict(os.environ)
        import {module}
        assert "prometheus_client" not in sys.modules, "imported prometheus_client"
        assert dict(os.environ) == before, "changed the environment"
        assert threading.active_count() == 1, "started a thread"
        print("ok")
        """
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_a_web_app_exposes_what_it_published(app: Any) -> None:
    from celery_kit.observability.server import exposition

    wrap_sender(app, lambda *a, **kw: None)("p", "t.add", _message(), None, None, "critical")
    body, content_type = exposition(app)
    assert content_type.startswith("text/plain")
    assert b'celery_task_sent_total{hostname="' in body
    assert b'name="t.add",queue_name="critical"} 1.0' in body
    body, content_type = exposition(app, "application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text")
