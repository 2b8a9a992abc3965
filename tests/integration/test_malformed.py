"""One broken message never stops a worker (real Redis and RabbitMQ, real workers).

Each malformed kind is pushed raw into the worker's queue between 20 good tasks: the worker
keeps its PID, every good task completes, the bad message is in the dead-letter store with
reason ``malformed`` and what was wrong, and ``celery_task_rejected_total`` counts it.
One worker per broker serves every kind (module-scoped), to keep CI time small.
"""

from __future__ import annotations

import json
import subprocess
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Connection

from celery_kit import Settings, make_app
from celery_kit.coordination.dlq import DeadLetterStore
from celery_kit.testing import RedisServer, WorkerFactory, WorkerProcess
from celery_kit.testing import wait_until as wait_for
from tests.integration.support.apps import run_kit
from tests.integration.support.observe import free_port, scrape

pytestmark = pytest.mark.timeout(120)

APPS = str(Path(__file__).parent / "apps")
APP = "kit_envelope"
#: The bound the test worker runs with (the default is 10 MiB).
MAX_BYTES = 64 * 1024


def envelope_env(broker: str, state: str, queue: str, mp_dir: Path, port: int) -> dict[str, str]:
    return {
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": state,
        "KIT_TEST_STATE_URL": state,
        "CELERY_KIT_REDIS__URL": state,
        "CELERY_KIT_TASKS__DEFAULT_QUEUE": queue,
        "CELERY_KIT_TASKS__MAX_MESSAGE_BYTES": str(MAX_BYTES),
        "CELERY_KIT_TASKS__SOFT_TIME_LIMIT_S": "15",
        "CELERY_KIT_TASKS__TIME_LIMIT_S": "20",
        "CELERY_KIT_TASKS__MAX_COUNTDOWN_S": "10",
        "CELERY_KIT_TASKS__RETRY_BACKOFF_MAX_S": "2",
        "CELERY_KIT_BROKER__VISIBILITY_MARGIN_S": "1",
        "CELERY_KIT_METRICS__ENABLED": "1",
        "CELERY_KIT_METRICS__PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(mp_dir),
    }


@dataclass
class Served:
    kind: str
    broker: str
    queue: str
    env: dict[str, str]
    worker: WorkerProcess
    port: int
    app: Celery
    state: redis.Redis
    store: DeadLetterStore
    pid: int = 0
    seen: set[str] = field(default_factory=set)


@pytest.fixture(scope="module", params=["redis", pytest.param("amqp", marks=pytest.mark.amqp)])
def served(
    request: pytest.FixtureRequest,
    kit_redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    state_url = kit_redis_server.url(kit_redis_server.fresh_db())
    if request.param == "redis":
        broker, queue = state_url, "default"
    else:
        broker, queue = request.getfixturevalue("kit_amqp_url"), f"t{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp(f"envelope-{request.param}")
    (tmp / "mp").mkdir()
    port = free_port()
    env = envelope_env(broker, state_url, queue, tmp / "mp", port)
    factory = WorkerFactory(tmp)
    worker = factory(APP, env=env, pythonpath=[APPS], concurrency=2, queues=[queue])
    settings_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    app = make_app(APP, settings=Settings(_environ=settings_env))
    state = redis.Redis.from_url(state_url)
    served = Served(
        request.param, broker, queue, env, worker, port, app, state, DeadLetterStore(app)
    )
    served.pid = worker.pid
    try:
        yield served
    finally:
        app.close()
        factory.stop_all()
        if request.param == "amqp":
            with Connection(broker) as conn:
                conn.channel().queue_delete(queue)


# -- how each kind is pushed ----------------------------------------------------------------


def good_headers(marker: str, **changes: Any) -> dict[str, Any]:
    headers: dict[str, Any] = {
        "lang": "py",
        "task": "kit_envelope.ok",
        "id": str(uuid.uuid4()),
        "root_id": None,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": "test",
        "x_marker": marker,
    }
    headers.update(changes)
    return {k: v for k, v in headers.items() if v is not _DROP}


_DROP: Any = object()
GOOD_BODY = json.dumps([["bad", -1], {}, {"callbacks": None, "errbacks": None}]).encode()


def publish(
    s: Served,
    body: bytes,
    headers: dict[str, Any],
    *,
    content_type: str = "application/json",
    content_encoding: str = "utf-8",
) -> None:
    """Publish exactly these bytes and headers with kombu (no Celery, no serializer)."""
    with Connection(s.broker) as conn:
        conn.Producer().publish(
            body,
            exchange="",
            routing_key=s.queue,
            headers=headers,
            content_type=content_type,
            content_encoding=content_encoding,
            retry=False,
        )


@dataclass(frozen=True)
class Case:
    name: str
    code: str  # what the dead letter must say was wrong (prefix of its exception text)
    push: Callable[[Served, str], None]
    redis_only: bool = False
    says: str = ""  # and this, when the code alone does not tell how it was caught


def _with(**changes: Any) -> Callable[[Served, str], None]:
    """Push the good body with these header changes."""
    return lambda s, m: publish(s, GOOD_BODY, good_headers(m, **changes))


def _body(body: bytes) -> Callable[[Served, str], None]:
    return lambda s, m: publish(s, body, good_headers(m))


def _pickle(s: Served, m: str) -> None:
    headers = good_headers(m)
    publish(
        s,
        b"\x80\x04N.",
        headers,
        content_type="application/x-python-serialize",
        content_encoding="binary",
    )


def _over(size: int) -> Callable[[Served, str], None]:
    return lambda s, m: publish(s, json.dumps([[m, "x" * size], {}, {}]).encode(), good_headers(m))


def _zip_bomb(s: Served, m: str) -> None:
    """50 KB of zlib that inflates to 50 MB (kombu would decompress it in the main process)."""
    body = zlib.compress(json.dumps([[m, " " * (50 * 1024 * 1024)], {}, {}]).encode(), 9)
    publish(s, body, good_headers(m, compression="application/x-gzip"))


def _small_compressed(s: Served, m: str) -> None:
    """Under the bound once inflated, but its headers are wrong: kombu inflates, the guard
    checks what came out."""
    body = zlib.compress(GOOD_BODY)
    publish(s, body, good_headers(m, retries="1", compression="application/x-gzip"))


def _bogus_compression(s: Served, m: str) -> None:
    publish(s, b"\x00\x01" + m.encode(), good_headers(m, compression="application/x-bogus"))


def _item(make: Callable[[Served, str], Any]) -> Callable[[Served, str], None]:
    """LPUSH a raw item where kombu's Redis channel pops task messages from."""

    def push(s: Served, m: str) -> None:
        item = make(s, m)
        s.state.lpush(s.queue, item if isinstance(item, bytes) else json.dumps(item).encode())

    return push


def _bad_base64(s: Served, m: str) -> dict[str, Any]:
    info = {"exchange": "", "routing_key": s.queue}
    properties = {"delivery_tag": m, "body_encoding": "base64", "delivery_info": info}
    return {
        "body": "a",
        "headers": {"x_marker": m},
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "properties": properties,
    }


CASES = [
    Case("headers_without_id", "headers", _with(id=_DROP)),
    Case("no_headers_at_all", "headers", lambda s, m: publish(s, GOOD_BODY, {"x_marker": m})),
    Case("json_not_a_list", "body", _body(b'{"args": [1]}')),
    Case("malformed_json", "decode", _body(b'[[1], {"a": ')),
    Case("retries_as_text", "headers", _with(retries="3")),
    Case("retries_negative", "headers", _with(retries=-1)),
    Case("eta_as_number", "headers", _with(eta=1700000000)),
    Case("eta_unparseable", "headers", _with(eta="next tuesday")),
    Case("timelimit_wrong_shape", "headers", _with(timelimit=[1, 2, 3])),
    Case("pickle_content_type", "content_type", _pickle),
    Case("body_just_over_the_bound", "too_large", _over(MAX_BYTES)),
    Case("body_of_50_mb", "too_large", _over(50 * 1024 * 1024)),
    Case("unknown_compression", "compression", _bogus_compression),
    Case("zlib_bomb_of_50_mb", "too_large", _zip_bomb, says="inflates beyond"),
    Case("compressed_with_bad_headers", "headers", _small_compressed),
    Case("not_json_at_all", "envelope", _item(lambda s, m: f"hello {m}".encode()), True),
    Case("json_list_not_envelope", "envelope", _item(lambda s, m: [m, 1]), True),
    Case("envelope_without_properties", "envelope", _item(lambda s, m: {"body": m}), True),
    Case("envelope_with_bad_base64", "envelope", _item(_bad_base64), True),
]


def rejected(s: Served, reason: str) -> float:
    samples = scrape(s.port)
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "celery_task_rejected_total"
        and dict(labels).get("reason") == reason
        and dict(labels).get("queue_name") == s.queue
    )


def send_good(s: Served, key: str, numbers: range) -> None:
    for i in numbers:
        s.app.send_task("kit_envelope.ok", args=[key, i])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_malformed_message_is_dead_lettered_and_the_worker_keeps_serving(
    served: Served, case: Case
) -> None:
    s = served
    if case.redis_only and s.kind != "redis":
        pytest.skip("a foreign list item only exists on Redis (AMQP always frames a message)")
    marker = f"m-{uuid.uuid4().hex[:12]}"
    before = rejected(s, "malformed")
    known = {e.id for e in s.store.list()}
    # Given 10 good tasks, the malformed message, then 10 more good tasks
    send_good(s, marker, range(10))
    case.push(s, marker)
    send_good(s, marker, range(10, 20))
    # Then every good task completes
    wait_for(
        lambda: s.state.scard(f"done:{marker}") == 20,
        timeout_s=60,
        what=f"20 good tasks around {case.name}",
    )
    # and the bad one is in the DLQ with reason malformed and what was wrong
    entries = wait_for(
        lambda: [e for e in s.store.list() if e.id not in known],
        timeout_s=20,
        what=f"the dead letter of {case.name}",
    )
    (entry,) = entries
    assert entry.reason == "malformed"
    assert entry.exception.startswith(f"{case.code}:"), entry.exception
    assert case.says in entry.exception
    assert entry.payload, "the start of the message is kept for inspection"
    assert len(entry.payload) <= 4096
    if case.code != "too_large" or s.kind == "amqp":
        assert marker in entry.payload
    assert entry.queue == s.queue or entry.routing_key == s.queue
    # and the rejected counter says so
    wait_for(
        lambda: rejected(s, "malformed") == before + 1,
        timeout_s=10,
        what="celery_task_rejected_total{reason=malformed} + 1",
    )
    # and it is the same worker process, that never lost its broker connection
    assert s.worker.is_alive()
    assert s.worker.pid == s.pid
    log = s.worker.log_text()
    for sign in ("Unrecoverable error", "Connection to broker lost", "Traceback"):
        assert sign not in log, f"{sign!r} in the worker log after {case.name}"
    # and nothing is left queued or unacknowledged
    if s.kind == "redis":
        wait_for(lambda: s.state.hlen("unacked") == 0, timeout_s=10, what="no unacked message")
        assert sum(int(s.state.llen(k)) for k in s.state.keys(f"{s.queue}*")) == 0


# -- a task that kills its whole worker --------------------------------------------------------


def test_a_task_that_kills_its_whole_worker_is_dead_lettered_after_the_cap(
    broker: tuple[str, str], kit_redis_url: str, kit_worker: WorkerFactory, tmp_path: Path
) -> None:
    broker_url, queue = broker
    cap = 2
    env = envelope_env(broker_url, kit_redis_url, queue, tmp_path, free_port())
    env |= {
        "CELERY_KIT_DLQ__MAX_WORKER_LOST_DELIVERIES": str(cap),
        # Redis redelivers an unacknowledged message after the visibility timeout: the
        # kit's transport derives 4 x the 1 s renewal interval and restores every 2 s
        # (kombu's: 2 s hard limit + 1 s margin, swept every second instead of ~100 s)
        "CELERY_KIT_BROKER__RENEWAL_INTERVAL_S": "1",
        "CELERY_KIT_TASKS__SOFT_TIME_LIMIT_S": "1",
        "CELERY_KIT_TASKS__TIME_LIMIT_S": "2",
        "CELERY_KIT_TASKS__MAX_COUNTDOWN_S": "0",
        "CELERY_KIT_TASKS__RETRY_BACKOFF_MAX_S": "0",
        "CELERY_KIT_BROKER__TRANSPORT_OPTIONS": json.dumps(
            {"unacked_restore_interval": 1, "unacked_restore_throttle": 1}
        ),
    }
    del env["CELERY_KIT_METRICS__ENABLED"], env["PROMETHEUS_MULTIPROC_DIR"]

    def start() -> WorkerProcess:
        return kit_worker(APP, env=env, pythonpath=[APPS], concurrency=1, queues=[queue])

    worker = start()
    app = make_app(APP, settings=Settings(_environ=env))
    state = redis.Redis.from_url(kit_redis_url)
    # When a task SIGKILLs the worker's main process on every delivery,
    result = app.send_task("kit_envelope.kill_worker", args=["k"])
    # and a supervisor restarts the worker each time it dies
    deaths = 0
    for _ in range(600):
        if result.ready():
            break
        if not worker.is_alive():
            deaths += 1
            worker.kill()  # the orphaned pool process too
            assert deaths <= cap + 2, "the message kept killing workers past the cap"
            worker = start()
        wait_for(lambda w=worker: result.ready() or not w.is_alive(), timeout_s=30, what="a death")
    # Then it is stored FAILURE and dead-lettered as worker_lost after the cap: the first
    # delivery is not marked (no round trip on first deliveries), so cap + 1 runs
    assert result.state == "FAILURE"
    assert "killed its worker (or pool process) 2 times" in str(result.result)
    assert int(state.get("runs:k") or 0) == cap + 1 == deaths
    entry = DeadLetterStore(app).get(result.id)
    assert entry is not None
    assert (entry.reason, entry.attempts, entry.args) == ("worker_lost", cap, ["k"])
    # and the service recovers: the worker that refused it is alive and serves new work
    assert worker.is_alive()
    send_good(
        Served("", "", queue, env, worker, 0, app, state, DeadLetterStore(app)), "c", range(3)
    )
    wait_for(lambda: state.scard("done:c") == 3, timeout_s=30, what="work after the poison")
    assert int(state.get("runs:k") or 0) == cap + 1
    app.close()


# -- unknown tasks and the dlq commands ------------------------------------------------------


def kit_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``celery -A kit_envelope kit ARGS`` for real, as an operator would."""
    return run_kit(APP, env, *args)


def test_unknown_tasks_are_dead_lettered_and_replayed_once_deployed(
    kit_redis_url: str, kit_worker: WorkerFactory, tmp_path: Path
) -> None:
    env = envelope_env(kit_redis_url, kit_redis_url, "default", tmp_path, free_port())
    del env["CELERY_KIT_METRICS__ENABLED"], env["PROMETHEUS_MULTIPROC_DIR"]
    worker = kit_worker(APP, env=env, pythonpath=[APPS], concurrency=1, queues=["default"])
    app = make_app(APP, settings=Settings(_environ=env))
    store = DeadLetterStore(app)
    s = Served("redis", kit_redis_url, "default", env, worker, 0, app, redis.Redis(), store)
    # Given a deploy that forgot the module of kit_envelope.late, and a malformed message
    result = app.send_task("kit_envelope.late", args=[21])
    publish(s, GOOD_BODY, good_headers("no-id", id=_DROP))
    # Then the unknown task ends FAILURE (as under Celery) and is dead-lettered too
    result.get(timeout=30, propagate=False)
    assert result.state == "FAILURE"
    assert "NotRegistered" in type(result.result).__name__
    wait_for(lambda: len(store.list()) == 2, timeout_s=20, what="two dead letters")
    (late,) = store.list(reason="not_registered")
    (bad,) = store.list(reason="malformed")
    assert (late.id, late.task, late.args) == (result.id, "kit_envelope.late", [21])
    # kit dlq list shows the reasons
    listed = kit_cli(env, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{late.id}  kit_envelope.late  not_registered" in listed.stdout
    assert f"{bad.id}  kit_envelope.ok  malformed" in listed.stdout
    only = kit_cli(env, "dlq", "list", "--reason", "malformed")
    assert bad.id in only.stdout
    assert late.id not in only.stdout
    # show prints what was wrong and the message as received
    shown = kit_cli(env, "dlq", "show", bad.id)
    assert shown.returncode == 0, shown.stderr
    assert "what was wrong: headers: header 'id' must be a non-empty string" in shown.stdout
    assert "message as received (truncated):" in shown.stdout
    assert "no-id" in shown.stdout
    # replay refuses a malformed entry with a clear message
    refused = kit_cli(env, "dlq", "replay", bad.id)
    assert refused.returncode != 0
    assert "is a malformed message" in refused.stderr
    assert "there is no valid task to replay" in refused.stderr
    # When the fixed deploy runs, replay --all re-runs the unknown task and skips the bad one
    worker.terminate()
    kit_worker(
        APP,
        env={**env, "KIT_TEST_LATE_TASK": "1"},
        pythonpath=[APPS],
        concurrency=1,
        queues=["default"],
    )
    replayed = kit_cli(env, "dlq", "replay", "--all")
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {late.id} (kit_envelope.late)" in replayed.stdout
    assert "skipped 1 malformed message(s)" in replayed.stdout
    fresh = make_app(APP, settings=Settings(_environ=env))
    assert fresh.AsyncResult(late.id).get(timeout=30) == 42
    assert [e.id for e in store.list()] == [bad.id]
    fresh.close()
    app.close()


# -- faults around the guard -------------------------------------------------------------------


def test_redelivered_messages_that_never_started_are_not_counted_as_deaths(
    kit_redis_url: str,
) -> None:
    """A broker restart redelivers every prefetched message; only one whose delivery was
    marked running (its worker died while running it) counts as a death."""
    from celery_kit.tasks.poison import deaths_on_redelivery

    env = envelope_env(kit_redis_url, kit_redis_url, "default", Path("."), 0)
    app = make_app(APP, settings=Settings(_environ=env))
    from celery_kit.coordination.client import kit_redis

    kr = kit_redis(app)
    # prefetched only, redelivered three times: never counted
    assert [deaths_on_redelivery(app, "t1") for _ in range(3)] == [0, 0, 0]
    # died while running (mark set), twice
    for expected in (1, 2):
        kr.client.set(kr.keys.worker_running("t2"), 1)
        assert deaths_on_redelivery(app, "t2") == expected
        assert not kr.client.exists(kr.keys.worker_running("t2"))  # the mark is consumed
    assert deaths_on_redelivery(app, "t2") == 2  # a later plain redelivery adds nothing
    assert 0 < kr.client.pttl(kr.keys.worker_lost("t2")) <= 86_400_000  # namespaced, expires
    assert kr.keys.worker_lost("t2").startswith("celery_kit:")
    app.close()


def test_a_malformed_message_is_acked_and_logged_when_the_dlq_redis_is_down(
    kit_redis_url: str, kit_worker: WorkerFactory, tmp_path: Path
) -> None:
    env = envelope_env(kit_redis_url, kit_redis_url, "default", tmp_path, free_port())
    del env["CELERY_KIT_METRICS__ENABLED"], env["PROMETHEUS_MULTIPROC_DIR"]
    # the kit's own Redis (dead-letter store) is unreachable; the broker is fine
    env |= {"CELERY_KIT_REDIS__URL": "redis://127.0.0.1:1/0", "CELERY_KIT_REDIS__RETRIES": "0"}
    worker = kit_worker(APP, env=env, pythonpath=[APPS], concurrency=1, queues=["default"])
    app = make_app(APP, settings=Settings(_environ=env))
    state = redis.Redis.from_url(kit_redis_url)
    store: Any = None  # unreachable: nothing to read back
    s = Served("redis", kit_redis_url, "default", env, worker, 0, app, state, store, worker.pid)
    # When a malformed message arrives between good tasks
    send_good(s, "down", range(3))
    publish(s, GOOD_BODY, good_headers("dlq-down", retries="x"))
    send_good(s, "down", range(3, 6))
    # Then the good tasks run, the message is not left queued, and its entry is in the log
    wait_for(lambda: state.scard("done:down") == 6, timeout_s=30, what="6 good tasks")
    wait_for(lambda: state.hlen("unacked") == 0, timeout_s=10, what="no unacked message")
    assert sum(int(state.llen(k)) for k in state.keys("default*")) == 0
    log = worker.log_text()
    assert "header 'retries' must be an integer >= 0, got 'x'" in log
    # the store's failure is logged at ERROR with the whole entry: nothing silently dropped
    assert "could not dead-letter task kit_envelope.ok[malformed-" in log
    assert '"reason": "malformed"' in log
    assert "dlq-down" in log
    assert worker.is_alive()
    assert worker.pid == s.pid
    app.close()


def test_the_guard_survives_a_redis_restart(kit_worker: WorkerFactory, tmp_path: Path) -> None:
    """The consumer reconnects with a new channel after a broker restart: the guard is
    installed on that one too (a foreign item after the restart is still taken off)."""
    (tmp_path / "redis").mkdir()
    with RedisServer(workdir=tmp_path / "redis") as server:
        url = server.url(1)
        env = envelope_env(url, url, "default", tmp_path, free_port())
        del env["CELERY_KIT_METRICS__ENABLED"], env["PROMETHEUS_MULTIPROC_DIR"]
        worker = kit_worker(APP, env=env, pythonpath=[APPS], concurrency=1, queues=["default"])
        server.client(1).lpush("default", b"before the restart")
        wait_for(lambda: "took a foreign item" in worker.log_text(), timeout_s=20, what="the first")
        # When Redis restarts (it keeps no data) and the worker reconnects
        server.restart(down_for_s=1.0)
        client = server.client(1)
        client.lpush("default", b"after the restart")
        app = make_app(APP, settings=Settings(_environ=env))
        app.send_task("kit_envelope.ok", args=["restart", 1])
        # Then the second foreign item is taken off too and good work still runs
        wait_for(lambda: client.scard("done:restart") == 1, timeout_s=60, what="a good task")
        wait_for(
            lambda: worker.log_text().count("took a foreign item") == 2,
            timeout_s=20,
            what="the second foreign item refused",
        )
        assert client.zcard("celery_kit:dlq:index") == 1  # written after the restart
        assert worker.is_alive()
        assert client.llen("default") == 0
        app.close()
        client.close()
