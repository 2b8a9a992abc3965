"""Beat without duplicates, on real processes: ``kit beat`` replicas, a prefork worker, Redis.

Every run records the schedule slot it stands for (header ``kit_beat_slot``) in a Redis
that the tests never restart, so "each tick exactly once" is checked slot by slot: no
slot twice, and no slot missing while a leader was up. Times are shrunk: a 1 s beat loop
(so a 5 s leader lock) and 1-3 s entries.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from celery_kit.testing import RedisServer, wait_until
from tests.integration.support.beat import (
    APPS,
    Beat,
    beat_env,
    duplicate_slots,
    leaders,
    missing_slots,
    runs,
    write_config,
)
from tests.integration.support.observe import free_port, scrape, value

pytestmark = pytest.mark.timeout(120)

#: Leader lock of every test here: 5 x the 1 s loop.
LOCK_TIMEOUT_S = 5.0

EVERY2 = """
[beat.schedule.every2]
task = "kit_beat.tick"
every_s = 2
args = ["every2"]
"""


@pytest.fixture
def start_beat(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Beat]]:
    started: list[Beat] = []

    def start(env: dict[str, str]) -> Beat:
        beat = Beat(env, tmp_path, f"beat-{len(started)}")
        started.append(beat)
        beat.wait_started()
        return beat

    yield start
    for beat in started:
        beat.stop()


def _sends(beat: Beat, entry: str) -> int:
    return beat.log().count(f"Sending due task {entry} ")


@pytest.mark.slow
def test_two_replicas_send_every_slot_exactly_once(
    kit_redis_url: str, kit_worker, start_beat, tmp_path: Path
) -> None:
    env = beat_env(
        broker=kit_redis_url, state=kit_redis_url, config=write_config(tmp_path / "c.toml", EVERY2)
    )
    kit_worker("kit_beat", env=env, pythonpath=[APPS])
    # Given two beat replicas of the same app
    beats = [start_beat(env), start_beat(env)]
    # When they run side by side for 16 s (8 slots of the 2 s entry)
    seen_leaders = []
    deadline = time.monotonic() + 16
    while time.monotonic() < deadline:
        seen_leaders.append(len(leaders(beats)))
        time.sleep(0.25)
    for beat in beats:
        beat.stop()
    time.sleep(1.0)  # the last run finishes
    records = runs(kit_redis_url, "every2")
    # Then exactly one of them led at every sample, every slot ran once, none is missing
    assert set(seen_leaders) == {1}, seen_leaders
    assert len(records) >= 7, records
    assert duplicate_slots(records) == {}
    assert missing_slots(records, 2.0) == []
    # and every run that was sent ran exactly once
    assert sum(_sends(b, "every2") for b in beats) == len(records)
    assert min(_sends(b, "every2") for b in beats) == 0  # the standby sent nothing


@pytest.mark.slow
def test_sigkill_of_the_leader_hands_over_without_repeating_a_slot(
    kit_redis_url: str, kit_worker, start_beat, tmp_path: Path
) -> None:
    env = beat_env(
        broker=kit_redis_url, state=kit_redis_url, config=write_config(tmp_path / "c.toml", EVERY2)
    )
    kit_worker("kit_beat", env=env, pythonpath=[APPS])
    beats = [start_beat(env), start_beat(env)]
    wait_until(lambda: len(runs(kit_redis_url, "every2")) >= 2, timeout_s=20, what="2 runs")
    leader = next(b for b in beats if b.is_leader())
    standby = next(b for b in beats if b is not leader)
    # When the leader is SIGKILLed (no release: its lock must expire)
    killed_at = time.time()
    leader.kill()
    # Then the standby leads after at most the lock timeout (+ one loop, + a run's start)
    wait_until(standby.is_leader, timeout_s=LOCK_TIMEOUT_S + 5, what="standby takes over")
    wait_until(
        lambda: [r for r in runs(kit_redis_url, "every2") if r["start"] > killed_at],
        timeout_s=10,
        what="a run after the kill",
    )
    first_after = min(r["start"] for r in runs(kit_redis_url, "every2") if r["start"] > killed_at)
    assert first_after - killed_at <= LOCK_TIMEOUT_S + 1 + 2.0, first_after - killed_at
    time.sleep(4.5)
    standby.stop()
    time.sleep(1.0)
    records = runs(kit_redis_url, "every2")
    # and no slot ran twice; slots are only missing while nobody could lead
    assert duplicate_slots(records) == {}
    for slot in missing_slots(records, 2.0):
        assert killed_at - 2.0 <= slot <= killed_at + LOCK_TIMEOUT_S + 1, (slot, killed_at)


@pytest.mark.slow
def test_redis_restart_never_two_senders_and_both_recover(
    kit_redis_url: str, kit_worker, start_beat, tmp_path: Path
) -> None:
    # the schedule and the lock live in a Redis of their own, restarted below; the broker
    # and the run records live in the session's Redis
    (tmp_path / "beat-redis").mkdir()
    with RedisServer(workdir=tmp_path / "beat-redis") as beat_redis:
        env = beat_env(
            broker=kit_redis_url,
            state=kit_redis_url,
            config=write_config(tmp_path / "c.toml", EVERY2),
            redis_url=beat_redis.url(0),
        )
        kit_worker("kit_beat", env=env, pythonpath=[APPS])
        beats = [start_beat(env), start_beat(env)]
        wait_until(lambda: len(runs(kit_redis_url, "every2")) >= 2, timeout_s=20, what="runs")
        # When Redis restarts (empty: no persistence) and stays down 3 s
        samples: list[int] = []
        restart = threading.Thread(target=beat_redis.restart, kwargs={"down_for_s": 3.0})
        restarted_at = time.time()
        restart.start()
        while restart.is_alive():
            samples.append(len(leaders(beats)))
            time.sleep(0.2)
        back_at = time.time()
        # Then both replicas keep running, one leads again, and runs resume
        wait_until(lambda: len(leaders(beats)) == 1, timeout_s=15, what="one leader again")
        wait_until(
            lambda: [r for r in runs(kit_redis_url, "every2") if r["start"] > back_at],
            timeout_s=15,
            what="a run after the restart",
        )
        for _ in range(20):  # 4 s: a single leader throughout
            samples.append(len(leaders(beats)))
            time.sleep(0.2)
        assert all(b.alive() for b in beats), [b.log()[-2000:] for b in beats]
        assert all(b.state()["written_at"] > back_at for b in beats)
        for beat in beats:
            beat.stop()
        time.sleep(1.0)
    records = runs(kit_redis_url, "every2")
    assert max(samples) == 1, samples
    assert duplicate_slots(records) == {}
    assert any(r["start"] < restarted_at for r in records)
    assert "schedule reconciled" in "".join(b.log() for b in beats)


CHANGING_A = """
[beat.schedule.keep]
task = "kit_beat.tick"
every_s = 2
args = ["keep"]

[beat.schedule.gone]
task = "kit_beat.tick"
every_s = 2
args = ["gone"]

[beat.schedule.nightly]
task = "kit_beat.tick"
cron = "0 3 * * *"
args = ["nightly"]
"""
CHANGING_B = """
[beat.schedule.keep]
task = "kit_beat.tick"
every_s = 3
args = ["keep"]

[beat.schedule.nightly]
task = "kit_beat.tick"
cron = "* * * * *"
timezone = "Asia/Kolkata"
args = ["nightly"]
"""


@pytest.mark.slow
def test_removed_entry_stops_and_changed_schedules_take_effect(
    kit_redis_url: str, kit_worker, start_beat, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", CHANGING_A)
    env = beat_env(broker=kit_redis_url, state=kit_redis_url, config=config)
    kit_worker("kit_beat", env=env, pythonpath=[APPS])
    first = start_beat(env)
    wait_until(lambda: len(runs(kit_redis_url, "gone")) >= 2, timeout_s=20, what="gone runs")
    first.stop()
    # When the config drops `gone`, makes `keep` every 3 s and `nightly` every minute
    write_config(config, CHANGING_B)
    restarted_at = time.time()
    second = start_beat(env)
    time.sleep(7.5)
    second.stop()
    time.sleep(1.0)
    # Then the restart logged the diff, `gone` never ran again and left nothing in Redis
    assert "removed [gone]" in second.log()
    assert "keep: schedule" in second.log()
    assert "nightly: schedule" in second.log()
    assert [r for r in runs(kit_redis_url, "gone") if r["start"] > restarted_at] == []
    client = redis.Redis.from_url(kit_redis_url, decode_responses=True)
    keys = set(client.zrange("celery_kit:beat::schedule", 0, -1))
    assert keys == {"celery_kit:beat:keep", "celery_kit:beat:nightly"}
    assert not client.exists("celery_kit:beat:gone")
    # and `keep` now runs on 3 s slots, `nightly` is due at the next minute (not 03:00)
    after = [r for r in runs(kit_redis_url, "keep") if r["start"] > restarted_at]
    assert len(after) >= 2, after
    assert all(r["slot"] % 3 == 0 for r in after), after
    assert missing_slots(after, 3.0) == []
    assert duplicate_slots(after) == {}
    stored = json.loads(client.hget("celery_kit:beat:nightly", "definition") or "{}")
    assert stored["schedule"]["zone"] == "Asia/Kolkata"  # RedBeat's JSON alone drops it
    due = client.zscore("celery_kit:beat::schedule", "celery_kit:beat:nightly")
    assert due is not None
    assert due - time.time() <= 60
    client.close()


OVERLAP = """
[beat.schedule.slow_skip]
task = "kit_beat.tick"
every_s = 1
args = ["slow_skip", 5]

[beat.schedule.slow_allow]
task = "kit_beat.tick"
every_s = 1
args = ["slow_allow", 3]
overlap = "allow"
"""


@pytest.mark.slow
def test_overlap_skip_never_runs_twice_at_once_and_counts_skips(
    kit_redis_url: str, kit_worker, start_beat, tmp_path: Path
) -> None:
    port = free_port()
    mp = tmp_path / "metrics-mp"
    mp.mkdir()
    config = write_config(tmp_path / "c.toml", OVERLAP)
    env = beat_env(broker=kit_redis_url, state=kit_redis_url, config=config)
    worker_env = env | {
        "CELERY_KIT_METRICS__ENABLED": "1",
        "CELERY_KIT_METRICS__PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(mp),
    }
    worker = kit_worker("kit_beat", env=worker_env, pythonpath=[APPS], concurrency=6)
    # Given a 5 s task on a 1 s entry with overlap = "skip" (and a 3 s one with "allow")
    beat = start_beat(env)
    time.sleep(8)
    beat.stop()
    time.sleep(1.0)  # runs record themselves when they start
    skipped = runs(kit_redis_url, "slow_skip")
    allowed = runs(kit_redis_url, "slow_allow")
    # Then the skip entry never ran twice at once, and its skipped runs are counted
    assert skipped, "the skip entry never ran"
    assert max(r["running"] for r in skipped) == 1, skipped
    samples = scrape(port)
    count = value(samples, "celery_beat_overlap_skipped_total", entry="slow_skip")
    assert count >= 3, count
    assert count == worker.log_text().count("beat entry 'slow_skip': run ")
    assert value(samples, "celery_beat_overlap_skipped_total", entry="slow_allow") == 0
    # and the control overlaps
    assert max(r["running"] for r in allowed) >= 2, allowed


@pytest.mark.slow
def test_catch_up_after_downtime_is_one_run(
    kit_redis_url: str, kit_worker, start_beat, tmp_path: Path
) -> None:
    entry = '[beat.schedule.cu]\ntask = "kit_beat.tick"\nevery_s = 1\nargs = ["cu"]\n'
    env = beat_env(
        broker=kit_redis_url, state=kit_redis_url, config=write_config(tmp_path / "c.toml", entry)
    )
    kit_worker("kit_beat", env=env, pythonpath=[APPS])
    first = start_beat(env)
    wait_until(lambda: len(runs(kit_redis_url, "cu")) >= 2, timeout_s=20, what="runs")
    first.stop()
    last_before = max(r["slot"] for r in runs(kit_redis_url, "cu"))
    # When beat stays down for 10 intervals
    time.sleep(10.5)
    restarted_at = time.time()
    second = start_beat(env)
    time.sleep(3.0)
    second.stop()
    time.sleep(1.0)
    after = [r for r in runs(kit_redis_url, "cu") if r["start"] > restarted_at]
    # Then the 10 missed slots produce one run (standing for the current slot), not ten:
    # no missed slot is sent, and every slot from the restart on is sent once
    missed = [r for r in after if last_before < r["slot"] < int(restarted_at)]
    assert missed == [], missed
    first = min(after, key=lambda r: r["start"])
    assert first["start"] - restarted_at < 5.0  # sent at start, not a full interval later
    assert len(after) == len({r["slot"] for r in after}), after
    assert duplicate_slots(after) == {}
    assert missing_slots(after, 1.0) == []


@pytest.mark.slow
def test_unregistered_task_is_refused_by_kit_beat_and_by_the_worker(
    kit_redis_url: str, kit_worker, tmp_path: Path
) -> None:
    from celery_kit.testing import WorkerStartError

    entry = '[beat.schedule.typo]\ntask = "kit_beat.tikc"\nevery_s = 5\n'
    env = beat_env(
        broker=kit_redis_url, state=kit_redis_url, config=write_config(tmp_path / "c.toml", entry)
    )
    beat = Beat(env, tmp_path, "refused")
    assert beat.proc.wait(60) != 0
    assert "[beat.schedule.typo]: task 'kit_beat.tikc' is not registered" in beat.log()
    with pytest.raises(WorkerStartError, match=r"kit_beat\.tikc"):
        kit_worker("kit_beat", env=env, pythonpath=[APPS], ready_timeout_s=30)


def test_leader_lease_is_exclusive_renewable_and_fails_closed(
    kit_redis_server: RedisServer, kit_redis_url: str, tmp_path: Path
) -> None:
    from celery_kit.beat.leader import Leadership

    def lease(client: redis.Redis, digest: str = "d1") -> Leadership:
        return Leadership(client, lock_key="t::lock", marker_key="t::m", timeout_s=2, digest=digest)

    client = redis.Redis.from_url(kit_redis_url, decode_responses=True)
    a, b = lease(client), lease(client)
    first = a.hold()
    assert first.leader
    assert first.needs_reconcile  # nothing reconciled yet
    assert not b.hold().leader
    a.mark_reconciled()
    assert a.hold() == type(first)(True, needs_reconcile=False)  # renewed, marker current
    assert a.valid()
    a.release()
    # a replica with another config that takes over must reconcile
    other = lease(client, "d2")
    assert other.hold() == type(first)(True, needs_reconcile=True)
    other.release()
    taken = b.hold()
    assert taken.leader
    assert taken.needs_reconcile is False  # d1's marker is still there
    # a run is recorded only by the replica holding the lease (the old leader cannot)
    record = {"key": "t:e", "schedule_key": "t::schedule", "score": 1.0}
    assert not a.record_run(meta='{"from": "a"}', **record)
    assert client.hget("t:e", "meta") is None
    assert b.record_run(meta='{"from": "b"}', **record)
    assert client.hget("t:e", "meta") == '{"from": "b"}'
    assert client.zscore("t::schedule", "t:e") == 1.0
    # Redis unreachable: not the leader (an error, not an exception), and not valid
    (tmp_path / "down").mkdir()
    with RedisServer(workdir=tmp_path / "down") as down:
        gone = redis.Redis.from_url(down.url(0), decode_responses=True, socket_timeout=1)
        c = lease(gone)
        assert c.hold().leader
        down.stop()
        lost = c.hold()
        assert not lost.leader
        assert lost.error
        assert not c.valid()
    client.close()


@pytest.mark.slow
def test_a_killed_workers_overlap_lock_expires_and_the_entry_runs_again(
    kit_redis_url: str, kit_worker, start_beat, tmp_path: Path
) -> None:
    entry = (
        '[beat.schedule.long]\ntask = "kit_beat.tick"\nevery_s = 1\nargs = ["long", 30]\n'
        "expires_s = 5\n"
    )
    config = write_config(tmp_path / "c.toml", entry)
    env = beat_env(
        broker=kit_redis_url,
        state=kit_redis_url,
        config=config,
        CELERY_KIT_BEAT__OVERLAP_LOCK_TTL_S="3",
        CELERY_KIT_TASKS__SOFT_TIME_LIMIT_S="40",
        CELERY_KIT_TASKS__TIME_LIMIT_S="45",
    )
    first = kit_worker("kit_beat", env=env, pythonpath=[APPS], concurrency=2)
    start_beat(env)
    wait_until(lambda: runs(kit_redis_url, "long"), timeout_s=20, what="first run")
    time.sleep(2.0)  # later runs are skipped while it holds the lock
    assert len(runs(kit_redis_url, "long")) == 1
    # When the worker running it is SIGKILLed mid-run (renewal stops with it)
    first.kill()
    killed_at = time.time()
    kit_worker("kit_beat", env=env, pythonpath=[APPS], concurrency=2)
    # Then a run starts again once the lock expired (3 s), not after the 30 s run
    wait_until(
        lambda: [r for r in runs(kit_redis_url, "long") if r["start"] > killed_at],
        timeout_s=15,
        what="a run after the lock expired",
    )


def test_overlap_guard_skips_and_counts_when_redis_is_unreachable(kit_redis_url: str) -> None:
    from celery.exceptions import Ignore
    from prometheus_client import CollectorRegistry

    from celery_kit import Settings, make_app
    from celery_kit.config.schedules import ENTRY_HEADER, OVERLAP_HEADER
    from celery_kit.observability.metrics import metrics_state

    # Given an app whose kit Redis is a closed port, and a run beat sent with overlap = "skip"
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(
        _environ={},
        broker_url=kit_redis_url,
        redis={"url": dead, "retries": 0, "socket_timeout_s": 0.5},
        metrics={"enabled": True},
    )
    registry = CollectorRegistry()
    app = make_app("overlap_dead", settings=settings)
    state = metrics_state(app)
    assert state is not None
    state.registry = registry
    ran = []

    @app.task(name="overlap_dead.body", shared=False)
    def body() -> None:
        ran.append(1)

    headers = {ENTRY_HEADER: "nightly", OVERLAP_HEADER: "skip"}
    body.push_request(id="r1", headers=headers, called_directly=False)
    try:
        # When it starts: the guard cannot check the lock
        with pytest.raises(Ignore, match="could not be checked"):
            body()
    finally:
        body.pop_request()
    # Then the body did not run and the skip was counted
    assert ran == []
    skipped = registry.get_sample_value(
        "celery_beat_overlap_skipped_total", {"entry": "nightly", "name": "overlap_dead.body"}
    )
    assert skipped == 1
