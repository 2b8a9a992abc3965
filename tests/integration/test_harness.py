"""Tests of the celery_kit.testing plugin itself, with real redis-server and worker processes."""

from __future__ import annotations

import importlib.util
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest
import redis
from celery import _state as celery_state
from kombu import Connection

import celery_kit
from celery_kit.testing import (
    AMQP_URL_ENV,
    DEFAULT_AMQP_URL,
    RedisServer,
    WorkerFactory,
    WorkerStartError,
    find_redis_server,
)

pytest_plugins = ["pytester"]

APPS = Path(__file__).resolve().parent / "apps"
KIT_ROOT = Path(celery_kit.__file__).resolve().parents[1]  # whichever copy this run imports
LoadPlain = Callable[..., ModuleType]


def _running(pid: int) -> bool:
    """Independent liveness check: the pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def _redis_env(url: str) -> dict[str, str]:
    return {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}


@pytest.fixture
def load_plain(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoadPlain]:
    """Load a fresh copy of plain_app in this process, configured for the given URLs."""
    loaded: list[ModuleType] = []
    previous_app = celery_state.get_current_app()  # Celery(...) makes itself the current app

    def load(broker_url: str, backend_url: str | None = None) -> ModuleType:
        monkeypatch.setenv("CELERY_BROKER_URL", broker_url)
        monkeypatch.setenv("CELERY_RESULT_BACKEND", backend_url or broker_url)
        name = f"plain_app_{uuid.uuid4().hex}"
        spec = importlib.util.spec_from_file_location(name, APPS / "plain_app.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        module.app.close()
    previous_app.set_current()


def test_find_redis_server_returns_an_executable() -> None:
    path = find_redis_server()
    assert os.path.basename(path) == "redis-server"
    assert os.access(path, os.X_OK)


def test_private_server_is_ours_and_not_6379(kit_redis_server: RedisServer) -> None:
    port = kit_redis_server.port
    assert port not in (0, 6379)
    assert kit_redis_server.url(5) == f"redis://127.0.0.1:{port}/5"
    with kit_redis_server.client() as client:
        assert client.ping() is True
        assert int(client.info("server")["process_id"]) == kit_redis_server.pid
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("databases") == {"databases": "64"}
    assert _running(kit_redis_server.pid)


_SEEN_URLS: list[str] = []


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_gets_an_empty_db_of_its_own(
    kit_redis_server: RedisServer, kit_redis_url: str, round_: int
) -> None:
    db = int(kit_redis_url.rsplit("/", 1)[1])
    assert 1 <= db <= 63
    assert kit_redis_url == kit_redis_server.url(db)
    with kit_redis_server.client(db) as client:
        assert client.dbsize() == 0
        client.set("left-behind", round_)
    assert kit_redis_url not in _SEEN_URLS
    _SEEN_URLS.append(kit_redis_url)


def test_fresh_db_cycles_1_to_63_and_flushes() -> None:
    with RedisServer() as server:
        first = server.fresh_db()
        with server.client(first) as client:
            client.set("stale", 1)
        others = [server.fresh_db() for _ in range(62)]
        assert sorted([first, *others]) == list(range(1, 64))
        assert server.fresh_db() == first
        with server.client(first) as client:
            assert client.dbsize() == 0
        workdir = server.log_path.parent
        assert workdir.is_dir()
    assert not workdir.exists()
    assert not _running(server.pid)


def test_restart_keeps_the_port_and_is_down_meanwhile(tmp_path: Path) -> None:
    with RedisServer(workdir=tmp_path) as server, server.client() as client:
        port, old_pid = server.port, server.pid
        failed_at: list[float] = []
        with ThreadPoolExecutor(max_workers=1) as pool:
            restarted = pool.submit(server.restart, down_for_s=1.5)
            while not restarted.done():
                try:
                    client.ping()
                except redis.ConnectionError:
                    failed_at.append(time.monotonic())
                time.sleep(0.02)
            restarted.result()
        assert failed_at, "client calls during the down window should have failed"
        assert failed_at[-1] - failed_at[0] >= 1.2, "the server should stay down ~1.5 s"
        assert server.port == port
        assert server.pid != old_pid
        assert not _running(old_pid)
        assert client.ping() is True
    assert not _running(server.pid)


def test_worker_runs_tasks_on_its_pool(
    kit_worker: WorkerFactory,
    kit_redis_url: str,
    load_plain: LoadPlain,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CELERY_KIT_LEAK", "must-not-reach-the-worker")
    monkeypatch.setenv(AMQP_URL_ENV, "amqp://kept.invalid//")
    worker = kit_worker("plain_app", env=_redis_env(kit_redis_url), pythonpath=[APPS])
    plain = load_plain(kit_redis_url)

    assert plain.add.delay(2, 3).get(timeout=20) == 5
    pool = worker.pool_pids()
    assert len(pool) == 2
    assert worker.pid not in pool
    assert all(_ppid(pid) == worker.pid for pid in pool)
    assert {plain.pid.delay().get(timeout=20) for _ in range(6)} <= set(pool)

    assert worker.hostname == f"{worker.hostname.split('@')[0]}@{socket.gethostname()}"
    assert f"{worker.hostname} ready." in worker.log_text()
    environ = _environ(worker.pid)
    assert "CELERY_KIT_LEAK" not in environ
    assert environ[AMQP_URL_ENV] == "amqp://kept.invalid//"
    assert environ["CELERY_BROKER_URL"] == kit_redis_url
    assert environ["PYTHONPATH"].split(os.pathsep)[0] == str(APPS)

    assert worker.terminate(timeout_s=15) == 0
    assert not worker.is_alive()
    assert [pid for pid in [worker.pid, *pool] if _running(pid)] == []


def test_kill_leaves_no_process_alive(
    kit_worker: WorkerFactory, kit_redis_url: str, load_plain: LoadPlain
) -> None:
    worker = kit_worker("plain_app", env=_redis_env(kit_redis_url), pythonpath=[APPS])
    plain = load_plain(kit_redis_url)
    busy = plain.sleep.delay(60)
    worker.wait_for_log(f"plain_app.sleep[{busy.id}] received", timeout_s=20)
    pool = worker.pool_pids()
    assert len(pool) == 2

    started = time.monotonic()
    worker.kill()
    assert time.monotonic() - started < 5
    assert not worker.is_alive()
    assert [pid for pid in [worker.pid, *pool] if _running(pid)] == []


def test_missing_app_module_error_carries_the_log_tail(kit_worker: WorkerFactory) -> None:
    with pytest.raises(WorkerStartError) as excinfo:
        kit_worker("celery_kit_no_such_module", ready_timeout_s=30)
    message = str(excinfo.value)
    log_lines = excinfo.value.log_path.read_text().strip().splitlines()
    assert log_lines
    assert log_lines[-1] in message
    assert "celery_kit_no_such_module" in message
    assert not _running(kit_worker.workers[-1].pid)


def test_ready_timeout_kills_the_worker(kit_worker: WorkerFactory, kit_redis_url: str) -> None:
    env = _redis_env(kit_redis_url)
    with pytest.raises(WorkerStartError, match=r"not ready after 0\.3 s"):
        kit_worker("plain_app", env=env, pythonpath=[APPS], ready_timeout_s=0.3)
    worker = kit_worker.workers[-1]
    assert not worker.is_alive()
    assert not _running(worker.pid)


def test_unique_name_is_short_and_unique(kit_unique_name: str) -> None:
    assert len(kit_unique_name) == 9
    assert kit_unique_name.startswith("t")
    int(kit_unique_name[1:], 16)


@pytest.mark.amqp
def test_amqp_url_fixture_yields_a_reachable_url(kit_amqp_url: str) -> None:
    assert kit_amqp_url == (os.environ.get(AMQP_URL_ENV) or DEFAULT_AMQP_URL)
    with Connection(kit_amqp_url, connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=1)
        assert conn.connected


@pytest.mark.amqp
def test_worker_consumes_a_unique_queue_on_rabbitmq(
    kit_worker: WorkerFactory,
    kit_amqp_url: str,
    kit_redis_url: str,
    kit_unique_name: str,
    load_plain: LoadPlain,
) -> None:
    env = {"CELERY_BROKER_URL": kit_amqp_url, "CELERY_RESULT_BACKEND": kit_redis_url}
    worker = kit_worker("plain_app", env=env, queues=[kit_unique_name], pythonpath=[APPS])
    plain = load_plain(kit_amqp_url, kit_redis_url)
    try:
        assert plain.add.apply_async((2, 3), queue=kit_unique_name).get(timeout=20) == 5
        assert "plain_app.add[" in worker.log_text()
    finally:
        worker.terminate()
        with Connection(kit_amqp_url, connect_timeout=5) as conn:
            conn.default_channel.queue_delete(kit_unique_name)


@pytest.mark.parametrize(("ci", "outcome"), [("", "skipped"), ("1", "errors")])
def test_unreachable_amqp_skips_locally_and_fails_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    closed_url = "amqp://guest:guest@127.0.0.1:1//"
    monkeypatch.setenv(AMQP_URL_ENV, closed_url)
    if ci:
        monkeypatch.setenv("CI", ci)
    else:
        monkeypatch.delenv("CI", raising=False)
    pythonpath = [str(KIT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(pythonpath))
    pytester.makepyfile(
        """
        pytest_plugins = ["celery_kit.testing"]

        def test_needs_rabbitmq(kit_amqp_url):
            assert kit_amqp_url
        """
    )
    result = pytester.runpytest_subprocess("-rsE", "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(**{outcome: 1})
    if ci:
        result.stdout.fnmatch_lines(["*RabbitMQ is required in CI*127.0.0.1:1*"])
    else:
        result.stdout.fnmatch_lines(["SKIPPED*127.0.0.1:1*CELERY_KIT_TEST_AMQP_URL*"])


def test_fixture_teardown_stops_leftover_workers_and_the_server(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pythonpath = [str(KIT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(pythonpath))
    pid_file = pytester.path / "pids.txt"
    pytester.makepyfile(
        f"""
        pytest_plugins = ["celery_kit.testing"]

        def test_leaves_a_worker_running(kit_worker, kit_redis_server, kit_redis_url):
            env = {{"CELERY_BROKER_URL": kit_redis_url, "CELERY_RESULT_BACKEND": kit_redis_url}}
            worker = kit_worker("plain_app", env=env, pythonpath=[{str(APPS)!r}])
            pids = [kit_redis_server.pid, worker.pid, *worker.pool_pids()]
            with open({str(pid_file)!r}, "w") as out:
                out.write(" ".join(map(str, pids)))
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)
    pids = [int(pid) for pid in pid_file.read_text().split()]
    assert len(pids) == 4
    assert [pid for pid in pids if _running(pid)] == []
