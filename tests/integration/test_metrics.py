"""Metrics on a real Redis and real prefork workers: nothing under-counted across processes.

Given/When/Then in each test. The worker gets ``PROMETHEUS_MULTIPROC_DIR`` in its
environment, exactly as ``kit worker`` / ``python -m celery_kit.launch`` prepare it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded

from celery_kit.config.topology import Priority
from celery_kit.observability.metrics import metrics_of
from celery_kit.testing import RedisServer, WorkerProcess, WorkerStartError
from tests.integration.support.observe import (
    APPS,
    free_port,
    listening_pids,
    obs_env,
    parse,
    producer,
    result_of,
    run_probe,
    scrape,
    value,
    wait_for,
)

pytestmark = pytest.mark.timeout(180)

N = 40


def test_counts_are_exact_across_children_and_recycled_children(
    kit_redis_url: str, kit_worker, tmp_path: Path
) -> None:
    port = free_port()
    env = obs_env(
        kit_redis_url,
        kit_redis_url,
        tmp_path,
        metrics_port=port,
        CELERY_KIT_WORKER__MAX_TASKS_PER_CHILD="5",
    )
    worker = kit_worker("kit_observe", env=env, concurrency=2, pythonpath=[APPS])
    app = producer(env)
    first_children = set(worker.pool_pids())
    assert len(first_children) == 2

    # Given N tasks, 3 failures and 2 tasks that retry once, on a pool recycled every 5 tasks
    results = [app.send_task("kit_observe.pid", (0.05,)) for _ in range(N)]
    failures = [app.send_task("kit_observe.fail") for _ in range(3)]
    retries = [app.send_task("kit_observe.retry_once", (uuid.uuid4().hex,)) for _ in range(2)]
    pids = {r.get(timeout=60) for r in results}
    for r in failures:
        r.get(timeout=60, propagate=False)
    assert [r.get(timeout=60) for r in retries] == [2, 2]
    # (a first child ran tasks, and children were recycled; which of the first two got
    # work is up to the scheduler: under load one of them may get none)
    assert first_children & pids
    assert len(pids) > 2

    # When /metrics is scraped on the worker's single port
    def settled() -> dict:
        samples = scrape(port)
        done = value(samples, "celery_task_succeeded_total", name="kit_observe.pid") >= N
        return samples if done and value(samples, "celery_task_retried_total") >= 2 else {}

    samples = wait_for(settled, timeout_s=30, what="the counts")
    time.sleep(1.0)
    samples = scrape(port)

    # Then every event is counted exactly once, whichever process saw it
    def v(metric: str, /, **labels: str) -> float:
        return value(samples, metric, **labels)

    host = {"hostname": worker.hostname, "queue_name": "default"}
    assert v("celery_task_received_total", name="kit_observe.pid", **host) == N
    assert v("celery_task_started_total", name="kit_observe.pid", **host) == N
    assert v("celery_task_succeeded_total", name="kit_observe.pid", **host) == N
    assert v("celery_task_runtime_count", name="kit_observe.pid", **host) == N
    assert v("celery_task_queue_wait_time_count", name="kit_observe.pid", **host) == N
    assert v("celery_task_started_total", name="kit_observe.fail") == 3
    assert v("celery_task_failed_total", name="kit_observe.fail", exception="ValueError") == 3
    assert v("celery_task_succeeded_total", name="kit_observe.fail") == 0
    assert v("celery_task_started_total", name="kit_observe.retry_once") == 4
    assert v("celery_task_retried_total", name="kit_observe.retry_once") == 2
    assert v("celery_task_succeeded_total", name="kit_observe.retry_once") == 2
    # the retries were re-published by the pool children: counted as sent there
    assert v("celery_task_sent_total", name="kit_observe.retry_once") == 2
    assert v("celery_worker_up", hostname=worker.hostname) == 1
    assert v("celery_worker_tasks_active", hostname=worker.hostname) == 0
    # exited children's files were folded into one archive, and nothing was lost doing so
    assert (tmp_path / "metrics-mp" / "counter_archive.db").exists()
    # And the publisher counted what it sent, in its own process
    sent = metrics_of(app).registry.get_sample_value(
        "celery_task_sent_total",
        {"name": "kit_observe.pid", "hostname": socket.gethostname(), "queue_name": "default"},
    )
    assert sent == N
    # And exactly one process, the worker's main process, listens on the metrics port
    assert listening_pids(port) == {worker.pid}


def test_time_limit_kill_and_lost_worker_are_counted_as_failures(
    kit_redis_url: str, kit_worker, tmp_path: Path
) -> None:
    port = free_port()
    env = obs_env(
        kit_redis_url,
        kit_redis_url,
        tmp_path,
        metrics_port=port,
        soft=1,
        hard=2,
        CELERY_KIT_METRICS__QUEUE_LENGTH_IN_WORKER="1",
        CELERY_KIT_METRICS__QUEUE_LENGTH_INTERVAL_S="1",
        # a lost worker is then a failure, not a requeue (Celery reports no requeue signal)
        CELERY_KIT_TASKS__REJECT_ON_WORKER_LOST="false",
        # billiard notices a dead pool process within ~5 s: its task's limit must be longer
        CELERY_KIT_TASKS__LIMITS=json.dumps(
            {"kit_observe.die": {"soft_time_limit_s": 20, "time_limit_s": 25}}
        ),
    )
    worker = kit_worker("kit_observe", env=env, concurrency=2, pythonpath=[APPS])
    app = producer(env)

    # Given a task that ignores its soft limit, and one whose pool process dies
    result = app.send_task("kit_observe.hard_limited")
    lost = app.send_task("kit_observe.die")
    # When the hard limit kills its pool process, and the other process exits (both
    # reported by the worker's main process, not by the pool process)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=30)
    with pytest.raises(WorkerLostError):
        lost.get(timeout=30)

    # Then each is one failure, with its exception class
    def counted() -> dict:
        samples = scrape(port)
        return samples if value(samples, "celery_task_failed_total") >= 2 else {}

    wait_for(counted, timeout_s=30, what="the failure")
    time.sleep(1.0)
    samples = scrape(port)
    labels = {"name": "kit_observe.hard_limited", "hostname": worker.hostname}
    assert value(samples, "celery_task_started_total", **labels) == 1
    assert (
        value(
            samples,
            "celery_task_failed_total",
            exception="TimeLimitExceeded",
            queue_name="default",
            **labels,
        )
        == 1
    )
    assert (
        value(
            samples,
            "celery_task_failed_total",
            name="kit_observe.die",
            exception="WorkerLostError",
            hostname=worker.hostname,
        )
        == 1
    )
    assert value(samples, "celery_task_failed_total") == 2
    assert value(samples, "celery_task_succeeded_total") == 0
    # (this worker samples its own queue's length too: metrics.queue_length_in_worker)
    assert ("celery_queue_length", frozenset({("queue_name", "default")})) in samples


def test_a_killed_pool_process_keeps_its_counts_and_a_restart_starts_clean(
    kit_redis_url: str, kit_worker, tmp_path: Path
) -> None:
    port = free_port()
    env = obs_env(
        kit_redis_url,
        kit_redis_url,
        tmp_path,
        metrics_port=port,
        soft=20,
        hard=25,  # billiard notices a dead pool process within ~5 s
        CELERY_KIT_TASKS__REJECT_ON_WORKER_LOST="false",  # the lost task is then a failure
    )
    worker = kit_worker("kit_observe", env=env, concurrency=2, pythonpath=[APPS])
    app = producer(env)
    children = set(worker.pool_pids())
    client = redis.Redis.from_url(kit_redis_url)

    # Given N tasks that ran in both pool processes
    pids = [r.get(timeout=60) for r in [app.send_task("kit_observe.pid") for _ in range(N)]]
    assert set(pids) == children
    # When a task is running in one of them and that process is SIGKILLed mid-task
    key = f"hold:{uuid.uuid4().hex}"
    held = app.send_task("kit_observe.hold", (key,))
    victim = int(wait_for(lambda: client.get(key), timeout_s=30, what="the held task"))
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(WorkerLostError):
        held.get(timeout=30)

    # Then what the dead process counted is still there, and its task is one lost failure
    def counted() -> dict:
        samples = scrape(port)
        return samples if value(samples, "celery_task_failed_total") >= 1 else {}

    wait_for(counted, timeout_s=30, what="the lost task")
    samples = scrape(port)
    host = {"hostname": worker.hostname, "queue_name": "default"}
    for metric in ("started", "succeeded"):
        assert value(samples, f"celery_task_{metric}_total", name="kit_observe.pid", **host) == N
    assert value(samples, "celery_task_runtime_count", name="kit_observe.pid", **host) == N
    assert pids.count(victim) > 0  # (the dead process had counted some of them)
    assert value(samples, "celery_task_started_total", name="kit_observe.hold", **host) == 1
    assert value(samples, "celery_task_succeeded_total", name="kit_observe.hold") == 0
    lost = {"name": "kit_observe.hold", "exception": "WorkerLostError", **host}
    assert value(samples, "celery_task_failed_total", **lost) == 1
    assert value(samples, "celery_task_failed_total") == 1

    # When the worker is restarted on the same metrics directory
    worker.terminate(timeout_s=30)
    again = kit_worker("kit_observe", env=env, concurrency=2, pythonpath=[APPS])
    for r in [app.send_task("kit_observe.pid") for _ in range(5)]:
        r.get(timeout=60)

    # Then it counts from zero (a restarted process's counters, as Prometheus expects), with
    # nothing left over from the first worker's files
    def restarted() -> dict:
        samples = scrape(port)
        return samples if value(samples, "celery_task_succeeded_total") >= 5 else {}

    wait_for(restarted, timeout_s=30, what="the counts after the restart")
    samples = scrape(port)
    assert value(samples, "celery_task_succeeded_total", hostname=again.hostname) == 5
    assert value(samples, "celery_task_started_total") == 5
    assert value(samples, "celery_task_succeeded_total") == 5
    assert value(samples, "celery_task_failed_total") == 0
    assert not [labels for (_, labels) in samples if ("hostname", worker.hostname) in labels]


def _true_depth(client: redis.Redis, queue: str) -> int:
    """Independent count: every list whose name is the queue or starts with ``queue:``."""
    keys = client.keys(f"{queue}*")
    names = [k for k in keys if k == queue.encode() or k.startswith(f"{queue}:".encode())]
    return sum(int(client.llen(k)) for k in names if client.type(k) == b"list")


def test_queue_length_counts_every_priority_and_wait_time_shows_the_delay(
    kit_redis_url: str, kit_worker, tmp_path: Path
) -> None:
    port = free_port()
    env = obs_env(kit_redis_url, kit_redis_url, tmp_path, metrics_port=port)
    app = producer(env)
    client = redis.Redis.from_url(kit_redis_url)

    # Given 9 messages waiting in `default` at several priorities (no worker yet)
    levels = [Priority.LOWEST, Priority.LOW, Priority.LOW, None, Priority.HIGH]
    levels += [Priority.HIGHEST, Priority.HIGHEST, Priority.HIGHEST, 7]
    published_at = time.time()
    results = [app.send_task("kit_observe.pid", priority=p) for p in levels]
    true_depth = _true_depth(client, "default")
    assert true_depth == len(levels)
    assert client.llen("default") < true_depth  # what `LLEN default` tools report

    # When the deployment exporter samples the queues once (a real `celery kit` process)
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "kit_observe", "kit", "exporter", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env, "PYTHONPATH": APPS},
    )
    assert done.returncode == 0, done.stderr
    samples = parse(done.stdout)
    # Then the length is the true number of waiting messages, every priority list counted
    assert value(samples, "celery_queue_length", queue_name="default") == true_depth
    assert value(samples, "celery_queue_length", queue_name="critical") == 0
    # and the split by kit priority is each level's count (None: the queue's default, 5)
    split = _by_priority(samples, "default")
    assert split == {0: 1, 3: 2, 5: 1, 7: 2, 9: 3, 1: 0, 2: 0, 4: 0, 6: 0, 8: 0}
    assert sum(split.values()) == true_depth
    assert set(_by_priority(samples, "critical").values()) == {0}
    oldest = value(samples, "celery_queue_oldest_message_age_seconds", queue_name="default")
    assert 0 < oldest <= time.time() - published_at + 1

    # When a worker starts at least DELAY seconds after the publish
    delay_s = 3.0
    time.sleep(max(0.0, published_at + delay_s - time.time()))
    kit_worker("kit_observe", env=env, concurrency=2, pythonpath=[APPS])
    for r in results:
        r.get(timeout=60)

    # Then the wait-time histogram puts every one of them above the delay
    def counted() -> dict:
        s = scrape(port)
        return s if value(s, "celery_task_queue_wait_time_count") >= len(levels) else {}

    samples = wait_for(counted, timeout_s=30, what="the wait times")
    name = {"name": "kit_observe.pid"}
    assert value(samples, "celery_task_queue_wait_time_count", **name) == len(levels)
    assert value(samples, "celery_task_queue_wait_time_bucket", le="2.5", **name) == 0
    assert value(samples, "celery_task_queue_wait_time_sum", **name) >= delay_s * len(levels)


def _by_priority(samples: dict, queue: str) -> dict[int, float]:
    """``celery_queue_length_by_priority`` of ``queue``, by priority."""
    out = {}
    for (name, labels), v in samples.items():
        found = dict(labels)
        if name == "celery_queue_length_by_priority" and found["queue_name"] == queue:
            out[int(found["priority"])] = v
    return out


def test_an_unreachable_redis_keeps_the_queue_series_and_the_worker(
    kit_worker, tmp_path: Path
) -> None:
    port = free_port()
    (tmp_path / "redis").mkdir()
    with RedisServer(workdir=tmp_path / "redis") as server:
        url = server.url(1)
        # Given a worker that samples `low` itself every 0.5 s (it consumes `default`)
        env = obs_env(
            url,
            url,
            tmp_path,
            metrics_port=port,
            CELERY_KIT_METRICS__QUEUE_LENGTH_IN_WORKER="1",
            CELERY_KIT_METRICS__QUEUE_LENGTH_INTERVAL_S="0.5",
            CELERY_KIT_METRICS__QUEUES='["low"]',
        )
        worker = kit_worker("kit_observe", env=env, concurrency=1, queues=["default"],
                            pythonpath=[APPS])  # fmt: skip
        app = producer(env)
        for level in (Priority.HIGHEST, Priority.HIGHEST, Priority.LOWEST):
            app.send_task("kit_observe.pid", queue="low", priority=level)
        app.close()
        want = {9: 2.0, 0: 1.0}

        def sampled() -> dict | None:
            found = scrape(port)
            return found if _by_priority(found, "low").get(9) == 2 else None

        seen = wait_for(sampled, timeout_s=30, what="low's two priority levels sampled")
        assert {k: v for k, v in _by_priority(seen, "low").items() if v} == want

        # When Redis goes away (SIGKILL: connections refused from now on)
        server.kill()
        worker.wait_for_log("queue lengths unavailable", timeout_s=30)
        # Then the worker lives on and still serves /metrics, the series at their last
        # values (stale, not dropped and not zero) and the total with them
        later = scrape(port)
        assert worker.is_alive()
        assert _by_priority(later, "low") == _by_priority(seen, "low")
        assert value(later, "celery_queue_length", queue_name="low") == 3
        assert worker.log_text().count("queue lengths unavailable") == 1  # once per outage

        # When Redis is back (empty: no persistence), the next sample overwrites them
        server.start()
        wait_for(
            lambda: set(_by_priority(scrape(port), "low").values()) == {0.0},
            timeout_s=60,
            what="low's levels sampled again after the restart",
        )
        worker.wait_for_log("queue lengths available again", timeout_s=30)
        assert value(scrape(port), "celery_queue_length", queue_name="low") == 0
        # and the worker still works
        app = producer(env)
        task_id = app.send_task("kit_observe.pid").id
        assert result_of(app, task_id, timeout_s=60) in worker.pool_pids()
        app.close()


def test_worker_refuses_to_start_when_prometheus_client_was_imported_too_early(
    kit_redis_url: str, kit_worker, tmp_path: Path
) -> None:
    env = obs_env(kit_redis_url, kit_redis_url, tmp_path, metrics_port=free_port())
    del env["PROMETHEUS_MULTIPROC_DIR"]  # and the app imports prometheus_client itself
    with pytest.raises(WorkerStartError) as info:
        kit_worker("kit_observe_early", env=env, concurrency=2, pythonpath=[APPS])
    assert "imported before PROMETHEUS_MULTIPROC_DIR was set" in str(info.value)
    assert "python -m celery_kit.launch" in str(info.value)


def test_launcher_prepares_the_directory_and_the_worker_removes_it(
    kit_redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = obs_env(kit_redis_url, kit_redis_url, tmp_path, metrics_port=port)
    del env["PROMETHEUS_MULTIPROC_DIR"]
    child_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CELERY_KIT_", "CELERY_BROKER", "CELERY_RESULT", "PROMETHEUS_"))
    }
    child_env |= env | {"PYTHONPATH": APPS, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "launched.log"
    name = f"launched-{uuid.uuid4().hex[:6]}"
    argv = [sys.executable, "-m", "celery_kit.launch", "-A", "kit_observe_early", "worker"]
    argv += ["-n", f"{name}@%h", "-c", "2", "-l", "INFO", "--without-gossip", "--without-mingle"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, env=child_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker = WorkerProcess(proc, hostname=f"{name}@{socket.gethostname()}", log_path=log)
    try:
        # Given a worker whose app imports prometheus_client, started through the launcher
        worker.wait_for_log(f"{worker.hostname} ready.", timeout_s=60)
        directory = next(
            line.split("multiprocess directory ", 1)[1].split(" ", 1)[0]
            for line in worker.log_text().splitlines()
            if "multiprocess directory" in line
        )
        assert Path(directory).is_dir()
        # When it runs tasks in both children
        app = producer(env)
        results = [app.send_task("kit_observe.pid", (0.2,)) for _ in range(10)]
        assert len({r.get(timeout=60) for r in results}) == 2

        # Then nothing is under-counted
        def counted() -> dict:
            s = scrape(port)
            return s if value(s, "celery_task_succeeded_total") >= 10 else {}

        samples = wait_for(counted, timeout_s=30, what="the counts")
        assert value(samples, "celery_task_started_total") == 10
    finally:
        worker.terminate(timeout_s=20)
    # And the private directory is gone after a warm shutdown
    assert not Path(directory).exists()


def test_deployment_health_reports_workers_and_queue_depths(
    kit_redis_url: str, kit_worker, tmp_path: Path
) -> None:
    env = obs_env(kit_redis_url, kit_redis_url, tmp_path)
    app = producer(env)
    # Given a worker on `default` and 3 messages waiting on `low` (nobody consumes it)
    worker = kit_worker(
        "kit_observe", env=env, concurrency=1, queues=["default"], pythonpath=[APPS]
    )
    for level in (Priority.LOWEST, Priority.NORMAL, Priority.HIGHEST):
        app.send_task("kit_observe.pid", queue="low", priority=level)

    # When `kit health` runs without a probe flag
    def report() -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "kit_observe", "kit", "health", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env, "PYTHONPATH": APPS},
        )
        data = json.loads(done.stdout)
        data["rc"] = done.returncode
        return data if worker.hostname in data["workers"] else {}

    data = wait_for(report, timeout_s=30, what="the worker's heartbeat key", every_s=1)
    # Then it lists the worker (from its Redis heartbeat) and every priority of `low`
    assert data["rc"] == 0
    assert data["workers_source"] == "redis"
    assert data["workers"][worker.hostname]["queues"] == ["default"]
    assert data["queues"]["low"]["messages"] == 3
    assert data["queues"]["low"]["oldest_age_s"] >= 0
    assert data["queues"]["default"]["messages"] == 0


@pytest.mark.amqp
def test_rabbitmq_queue_length_and_probes(
    kit_amqp_url: str, kit_redis_url: str, kit_worker, kit_unique_name: str, tmp_path: Path
) -> None:
    from kombu import Connection
    from prometheus_client import CollectorRegistry

    from celery_kit.config import MetricsSettings
    from celery_kit.observability.depth import DepthReader
    from celery_kit.observability.metrics import KitMetrics
    from celery_kit.observability.poller import QueueLengthPoller

    queue = kit_unique_name
    env = obs_env(kit_amqp_url, kit_redis_url, tmp_path, CELERY_KIT_TASKS__DEFAULT_QUEUE=queue)
    app = producer(env)
    try:
        # Given 5 messages at several priorities in a priority queue nobody consumes yet
        levels = [Priority.LOWEST, Priority.NORMAL, Priority.HIGH, Priority.HIGHEST, None]
        ids = [app.send_task("kit_observe.pid", priority=p).id for p in levels]
        reader = DepthReader(app)
        try:
            depths = reader.read([queue, f"{queue}-missing"])
        finally:
            reader.close()
        # Then RabbitMQ's count is every waiting message, and a missing queue is unknown
        assert depths[queue].messages == len(levels)
        assert depths[queue].consumers == 0
        assert depths[f"{queue}-missing"].messages is None
        # and the poller exports that total, but no per-priority split (RabbitMQ has none)
        m = KitMetrics(MetricsSettings(), registry=CollectorRegistry())
        poller = QueueLengthPoller(app, m, queues=[queue], interval_s=60)
        try:
            assert poller.sample_once()[queue].by_step == ()
        finally:
            poller.stop()
        assert m.registry.get_sample_value("celery_queue_length", {"queue_name": queue}) == 5
        names = {s.name for family in m.registry.collect() for s in family.samples}
        assert "celery_queue_length" in names
        assert "celery_queue_length_by_priority" not in names
        # When a worker consumes it, its heartbeat passes both probes on RabbitMQ too
        worker = kit_worker("kit_observe", env=env, queues=[queue], pythonpath=[APPS])
        assert {app.AsyncResult(i).get(timeout=60) for i in ids} <= set(worker.pool_pids())
        beat = tmp_path / f"heartbeat-{worker.hostname.split('@')[0]}.json"
        wait_for(lambda: run_probe("liveness", beat)[0] == 0, timeout_s=30, what="liveness")
        wait_for(lambda: run_probe("readiness", beat)[0] == 0, timeout_s=30, what="readiness")
    finally:
        with Connection(kit_amqp_url) as conn:
            conn.channel().queue_delete(queue)


def test_metrics_server_answers_metrics_only_and_reports_failures() -> None:
    import urllib.error
    import urllib.request

    from celery_kit.observability.server import MetricsServer

    calls: list[str] = []

    def render(accept: str) -> tuple[bytes, str]:
        calls.append(accept)
        if len(calls) > 1:
            raise RuntimeError("broken")
        return b"x_total 1\n", "text/plain; version=0.0.4"

    server = MetricsServer(render, address="127.0.0.1", port=0)
    port = server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert r.read() == b"x_total 1\n"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=10)
        missing.value.close()
        assert missing.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
        failed.value.close()
        assert failed.value.code == 500
    finally:
        server.stop()


def test_a_taken_metrics_port_stops_the_worker_with_the_fix(
    kit_redis_url: str, kit_worker, tmp_path: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = int(taken.getsockname()[1])
        env = obs_env(kit_redis_url, kit_redis_url, tmp_path, metrics_port=port)
        env["CELERY_KIT_METRICS__ADDRESS"] = "127.0.0.1"
        with pytest.raises(WorkerStartError) as info:
            kit_worker("kit_observe", env=env, concurrency=1, pythonpath=[APPS])
    assert "Give each worker its own metrics.port" in str(info.value)
