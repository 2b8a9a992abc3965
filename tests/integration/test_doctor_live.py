"""`doctor --live` against real brokers: findings appear with the trap and go with the fix."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from kombu import Connection, Queue

from celery_kit.cli import main
from celery_kit.doctor.live_redis import check_redis
from celery_kit.testing import RedisServer


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this module's own: the tests change its CONFIG."""
    with RedisServer(workdir=tmp_path_factory.mktemp("doctor-redis")) as server:
        yield server


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def live_report(app_dir: Path, source: str) -> tuple[int, dict]:
    (app_dir / "liveproj.py").write_text(textwrap.dedent(source))
    sys.modules.pop("liveproj", None)  # the file changed: import it afresh
    result = CliRunner().invoke(
        main, ["-A", "liveproj", "doctor", "--live", "--json", "--timeout", "2"]
    )
    return result.exit_code, json.loads(result.output)


def rule_ids(report: dict) -> set[str]:
    return {f["rule"] for f in report["findings"]}


def test_redis_configured_badly_then_well(own_redis: RedisServer, app_dir: Path) -> None:
    app = f"""
    from celery import Celery
    app = Celery("liveproj", broker="{own_redis.url(0)}", set_as_current=False)
    """
    with own_redis.client() as client:
        # Given a broker that evicts keys and keeps nothing on disk
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.config_set("appendonly", "no")
        client.config_set("save", "")
        code, report = live_report(app_dir, app)
        assert code == 1
        assert {"redis-eviction-policy", "redis-no-persistence", "redis-version"} <= rule_ids(
            report
        )
        eviction = next(f for f in report["findings"] if f["rule"] == "redis-eviction-policy")
        assert eviction["evidence"][0]["value"] == "allkeys-lru"
        # When it is fixed, the findings go away
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("appendonly", "yes")
        _code, report = live_report(app_dir, app)
        assert not {"redis-eviction-policy", "redis-no-persistence"} & rule_ids(report)
        client.config_set("appendonly", "no")


def test_redis_without_config_permission_falls_back_to_info(own_redis: RedisServer) -> None:
    with own_redis.client() as client:
        client.config_set("maxmemory-policy", "volatile-lru")
        client.execute_command(
            "ACL", "SETUSER", "doctor", "on", ">doctorpw", "~*", "+@all", "-config"
        )
        try:
            url = f"redis://doctor:doctorpw@127.0.0.1:{own_redis.port}/0"
            found = {f.rule.id: f for f in check_redis(url, timeout_s=2)}
        finally:
            client.execute_command("ACL", "DELUSER", "doctor")
            client.config_set("maxmemory-policy", "noeviction")
    assert "redis-config-unreadable" in found
    assert found["redis-eviction-policy"].evidence[0].value == "volatile-lru"


def test_unreachable_redis_is_one_bounded_finding() -> None:
    found = check_redis("redis://127.0.0.1:1/0", timeout_s=0.5)
    assert [f.rule.id for f in found] == ["broker-unreachable"]


@pytest.mark.amqp
def test_rabbitmq_queue_with_other_arguments(
    kit_amqp_url: str, kit_unique_name: str, app_dir: Path
) -> None:
    name, absent = kit_unique_name, f"{kit_unique_name}-absent"
    app = """
    from celery import Celery
    from kombu import Queue
    app = Celery("liveproj", broker="{url}", set_as_current=False)
    app.conf.task_queues = [Queue("{name}", queue_arguments={args}), Queue("{absent}")]
    app.conf.task_default_queue = "{name}"
    """
    with Connection(kit_amqp_url) as conn:
        # Given a queue that exists with x-max-priority 5 and a waiting message
        Queue(name, queue_arguments={"x-max-priority": 5}).bind(conn.channel()).declare()
        conn.Producer().publish({"x": 1}, routing_key=name)
        try:
            # When the app declares it with x-max-priority 10
            code, report = live_report(
                app_dir,
                app.format(url=kit_amqp_url, name=name, absent=absent, args={"x-max-priority": 10}),
            )
            assert code == 1
            ids = rule_ids(report)
            assert {"rabbitmq-queue-arguments-differ", "queue-without-consumers"} <= ids
            differ = next(
                f for f in report["findings"] if f["rule"] == "rabbitmq-queue-arguments-differ"
            )
            assert "x-max-priority" in str(differ["evidence"][1]["value"])
            assert any("assumed" in n or "management API" in n for n in report["notes"])
            # Then declared as it exists, the arguments finding goes away
            _code, report = live_report(
                app_dir,
                app.format(url=kit_amqp_url, name=name, absent=absent, args={"x-max-priority": 5}),
            )
            assert "rabbitmq-queue-arguments-differ" not in rule_ids(report)
            # and the doctor created nothing: the undeclared queue still does not exist
            from amqp.exceptions import NotFound

            with pytest.raises(NotFound):
                conn.channel().queue_declare(absent, passive=True)
        finally:
            conn.channel().queue_delete(name)


def test_a_redis_that_accepts_but_never_answers_is_bounded() -> None:
    # a TCP listener that never replies: the probe must give up after its timeout
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        found = check_redis(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    assert [f.rule.id for f in found] == ["broker-unreachable"]
    assert "Timeout" in found[0].message


def test_unreachable_rabbitmq_is_one_bounded_finding() -> None:
    from celery_kit.doctor.live_amqp import check_amqp

    report = check_amqp(
        "amqp://guest:guest@127.0.0.1:1//", [Queue("q")], timeout_s=0.5, longest_late_ack_s=None
    )
    assert [f.rule.id for f in report.findings] == ["broker-unreachable"]


def test_a_real_worker_refuses_naming_every_bad_task(kit_redis_url: str, kit_worker) -> None:
    # The worker's StartupChecks run the rule engine: both problems in one refusal
    from celery_kit.testing import WorkerStartError

    apps = str(Path(__file__).parent / "apps")
    env = {"CELERY_BROKER_URL": kit_redis_url, "CELERY_RESULT_BACKEND": kit_redis_url}
    # kombu's Redis transport: a task limit must fit its visibility timeout (the kit's
    # transport renews held messages, so there only the soft/hard problem is refused)
    env["CELERY_KIT_BROKER__TRANSPORT"] = "kombu"
    with pytest.raises(WorkerStartError) as info:
        kit_worker("doctor_two_bad", env=env, concurrency=1, pythonpath=[apps], ready_timeout_s=30)
    text = str(info.value)
    assert 'tasks.limits."doctor_two_bad.too_slow".time_limit_s' in text
    assert "task 'doctor_two_bad.inverted': soft_time_limit=8 must be below time_limit=5" in text
