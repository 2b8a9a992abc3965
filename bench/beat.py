"""bench.beat: what the kit's beat costs per loop, how late its runs start, and what a
Redis restart does to it, side by side with plain Celery beat and RedBeat as documented.

One run, on private redis-servers (never the machine's 6379):

1. **Redis round trips per beat loop** on the Redis holding the schedule: schedulers
   ticked in-process (1 s loop, ten entries: one due every second, nine idle), every
   request to that Redis counted at the socket (``send_packed_command``; a pipeline is one
   round trip) next to the commands Redis executed (``INFO commandstats``). Kit leader,
   kit standby, RedBeat leader; plain Celery beat keeps its schedule in a local file.
2. **Tick -> start latency**: a real beat process and a real prefork worker per flavour,
   an every-1-s entry for ``BENCH_BEAT_SECONDS`` (default 20): from the time the run was
   due (kit: its slot; plain Celery: previous send + 1 s, its own rule) and from the
   publish to the moment the task body starts.
3. **Redis restart with two replicas** (schedule Redis down 3 s, no persistence): beat
   processes still alive 15 s later, and slots sent twice (kit) / sends within 0.5 s of
   each other (RedBeat).

Writes ``bench/results/beat.md`` and ``.json``.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import celery
import redis
import redis.connection

from celery_kit.testing import RedisServer, WorkerFactory

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
SECONDS = float(os.environ.get("BENCH_BEAT_SECONDS", "20"))
LOOP_SECONDS = 10.0


# -- 1. round trips per loop -------------------------------------------------------------


class _RoundTrips:
    """Counts requests sent to one Redis port (a pipeline's batch is one)."""

    def __init__(self, port: int) -> None:
        self.port, self.count = port, 0
        self._orig = redis.connection.AbstractConnection.send_packed_command

    def __enter__(self) -> _RoundTrips:
        orig, me = self._orig, self

        def counted(conn: Any, command: Any, check_health: bool = True) -> Any:
            if getattr(conn, "port", None) == me.port:
                me.count += 1
            return orig(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        redis.connection.AbstractConnection.send_packed_command = self._orig  # type: ignore[method-assign]


def _commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))


def _entries() -> dict[str, dict[str, Any]]:
    entries = {"due": {"task": "bench.tick", "every_s": 1}}
    entries |= {f"idle{i}": {"task": "bench.tick", "every_s": 3600} for i in range(9)}
    return entries


def _kit_app(schedule_url: str, broker: str, prefix: str) -> celery.Celery:
    from celery_kit import Settings, make_app

    settings = Settings(
        _environ={},
        broker_url=broker,
        redis={"url": schedule_url, "key_prefix": prefix},
        beat={"max_loop_interval_s": 1, "schedule": _entries()},
    )
    return make_app("bench_beat_rt", settings=settings)


def _redbeat_app(schedule_url: str, broker: str) -> celery.Celery:
    app = celery.Celery("bench_redbeat_rt", broker=broker, set_as_current=False)
    schedule = {
        name: {"task": e["task"], "schedule": timedelta(seconds=e["every_s"])}
        for name, e in _entries().items()
    }
    app.conf.update(
        beat_schedule=schedule,
        beat_max_loop_interval=1,
        redbeat_redis_url=schedule_url,
        redbeat_redis_options={},
        redbeat_key_prefix="plainredbeat:",
        redbeat_lock_timeout=5,
    )
    return app


def _loop(scheduler: Any, client: redis.Redis, port: int) -> dict[str, float]:
    sent = Counter[str]()
    original = scheduler.apply_async

    def counting(entry: Any, *args: Any, **kwargs: Any) -> Any:
        sent[entry.name] += 1
        return original(entry, *args, **kwargs)

    scheduler.apply_async = counting
    scheduler.tick()  # first loop: leadership and reconciliation, not steady state
    loops = 0
    before = _commands(client)
    with _RoundTrips(port) as rts:
        deadline = time.monotonic() + LOOP_SECONDS
        while time.monotonic() < deadline:
            time.sleep(max(0.0, float(scheduler.tick())))
            loops += 1
    commands = _commands(client) - before - 1  # minus our own INFO
    sends = sum(sent.values())
    return {
        "loops": loops,
        "sends": sends,
        "round_trips_per_loop": rts.count / loops,
        "commands_per_loop": commands / loops,
    }


def round_trips() -> dict[str, dict[str, float]]:
    from redbeat.schedulers import RedBeatScheduler, acquire_distributed_beat_lock

    from celery_kit.beat.scheduler import KitScheduler

    out = {}
    with tempfile.TemporaryDirectory() as tmp, RedisServer(workdir=tmp) as server:
        broker_server = RedisServer().start()  # the broker on its own port: not counted
        client = server.client(0)
        broker = broker_server.url(1)
        kit_app = _kit_app(server.url(0), broker, "rt")
        leader = KitScheduler(app=kit_app, max_interval=1)
        out["kit leader"] = _loop(leader, client, server.port)
        leader.close()
        standby_app = _kit_app(server.url(0), broker, "rt")
        client.set("rt:beat::lock", "another-replica", px=60_000)
        standby = KitScheduler(app=standby_app, max_interval=1)
        out["kit standby"] = _loop(standby, client, server.port)
        standby.close()
        rb_app = _redbeat_app(server.url(0), broker)
        redbeat = RedBeatScheduler(app=rb_app, max_interval=1)
        acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=redbeat))
        out["RedBeat leader"] = _loop(redbeat, client, server.port)
        redbeat.close()
        client.close()
        broker_server.stop()
    return out


# -- 2. latency and 3. Redis restart, with real processes --------------------------------


def _beat(flavour: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "celery", "-A", "bench._beat_app"]
    argv += ["kit", "beat"] if flavour == "kit" else ["beat", "-s", str(log.with_suffix(".db"))]
    argv += ["-l", "INFO"]
    child = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    child |= env | {"BENCH_FLAVOUR": flavour, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child,
            cwd=log.parent,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _runs(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange("bench:runs", 0, -1)]


def _pct(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {}
    return {
        "n": len(values),
        "median_ms": 1000 * statistics.median(values),
        "p90_ms": 1000 * values[int(0.9 * (len(values) - 1))],
        "max_ms": 1000 * values[-1],
    }


def _env(tmp: Path, server: RedisServer, flavour: str, beat_db: int) -> dict[str, str]:
    config = tmp / "beat.toml"
    config.write_text(
        "[beat]\nmax_loop_interval_s = 1.0\n\n[beat.schedule.tick]\n"
        'task = "bench.tick"\nevery_s = 1\n'
    )
    return {
        "CELERY_BROKER_URL": server.url(1),
        "CELERY_KIT_CONFIG": str(config),
        "CELERY_KIT_REDIS__URL": server.url(beat_db),
        "CELERY_KIT_BEAT__HEARTBEAT_FILE": str(tmp / f"{flavour}.json"),
        "BENCH_STATE_URL": server.url(2),
        "BENCH_BEAT_REDIS_URL": server.url(beat_db),
        "BENCH_FLAVOUR": flavour,
    }


def latency() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for flavour in ("kit", "plain"):
        with tempfile.TemporaryDirectory() as tmp_, RedisServer(workdir=tmp_) as server:
            tmp = Path(tmp_)
            env = _env(tmp, server, flavour, 3)
            workers = WorkerFactory(tmp)
            workers("bench._beat_app", env=env, concurrency=1, pythonpath=[ROOT])
            beat = _beat(flavour, env, tmp / "beat.log")
            time.sleep(SECONDS)
            _stop(beat)
            time.sleep(1.0)
            workers.stop_all()
            client = server.client(2)
            runs = sorted(_runs(client), key=lambda r: r["start"])
            client.close()
        publish = [r["start"] - r["published"] for r in runs if r["published"]]
        if flavour == "kit":
            due = [r["start"] - r["slot"] for r in runs if r["slot"] is not None]
        else:  # Celery's interval rule: due one interval after the previous send
            due = [b["start"] - (a["published"] + 1.0) for a, b in itertools.pairwise(runs)]
        gaps = [b["start"] - a["start"] for a, b in itertools.pairwise(runs)]
        out[flavour] = {
            "runs": len(runs),
            "due_to_start": _pct(due[1:]),  # the first run is a start-up catch-up
            "publish_to_start": _pct(publish[1:]),
            "interval_stdev_ms": 1000 * statistics.pstdev(gaps) if len(gaps) > 1 else None,
        }
    return out


def redis_restart() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for flavour in ("kit", "redbeat"):
        with tempfile.TemporaryDirectory() as tmp_:
            tmp = Path(tmp_)
            (tmp / "state").mkdir()
            (tmp / "sched").mkdir()
            with (
                RedisServer(workdir=tmp / "state") as state,
                RedisServer(workdir=tmp / "sched") as sched,
            ):
                env = _env(tmp, state, flavour, 0) | {
                    "CELERY_KIT_REDIS__URL": sched.url(0),
                    "BENCH_BEAT_REDIS_URL": sched.url(0),
                }
                workers = WorkerFactory(tmp)
                workers("bench._beat_app", env=env, concurrency=2, pythonpath=[ROOT])
                beats = [
                    _beat(
                        flavour,
                        env | {"CELERY_KIT_BEAT__HEARTBEAT_FILE": str(tmp / f"b{i}.json")},
                        tmp / f"beat{i}.log",
                    )
                    for i in range(2)
                ]
                time.sleep(6)
                restart = threading.Thread(target=sched.restart, kwargs={"down_for_s": 3.0})
                restart.start()
                restart.join()
                time.sleep(15)
                alive = sum(b.poll() is None for b in beats)
                for b in beats:
                    _stop(b)
                time.sleep(1.0)
                workers.stop_all()
                client = state.client(2)
                runs = sorted(_runs(client), key=lambda r: r["start"])
                client.close()
                logs = "".join((tmp / f"beat{i}.log").read_text(errors="replace") for i in range(2))
        slots = Counter(r["slot"] for r in runs if r["slot"] is not None)
        close = sum(1 for a, b in itertools.pairwise(runs) if b["published"] - a["published"] < 0.5)
        out[flavour] = {
            "beats_alive_after": alive,
            "runs": len(runs),
            "slots_sent_twice": sum(1 for n in slots.values() if n > 1) if slots else None,
            "sends_within_0_5_s": close,
            "exits_logged": logs.count("beat raised exception"),
            "exit_exceptions": sorted(
                set(re.findall(r"beat raised exception <class '([\w.]+)'", logs))
            ),
        }
    return out


# -- report ---------------------------------------------------------------------------------


def _table(rows: list[list[Any]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in body]
    return "\n".join(lines)


def _f(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    RESULTS.mkdir(exist_ok=True)
    print("round trips per loop ...", flush=True)
    rts = round_trips()
    print("tick -> start latency ...", flush=True)
    lat = latency()
    print("Redis restart with two replicas ...", flush=True)
    restart = redis_restart()
    data = {"round_trips": rts, "latency": lat, "redis_restart": restart}
    (RESULTS / "beat.json").write_text(json.dumps(data, indent=2))
    rt_rows = [
        [
            "scheduler",
            "loops",
            "sends",
            "round trips / loop",
            "commands / loop",
        ]
    ]
    for name, r in rts.items():
        rt_rows.append(
            [
                name,
                r["loops"],
                r["sends"],
                _f(r["round_trips_per_loop"], 2),
                _f(r["commands_per_loop"], 2),
            ]
        )
    rt_rows.append(["plain Celery beat", "-", "-", "0 (local file)", "0"])
    lat_rows = [
        [
            "flavour",
            "runs",
            "due -> start median / p90 / max (ms)",
            "publish -> start median / p90 / max (ms)",
            "interval stdev (ms)",
        ]
    ]
    for name, r in lat.items():
        d, p = r["due_to_start"], r["publish_to_start"]
        lat_rows.append(
            [
                name,
                r["runs"],
                f"{_f(d.get('median_ms'))} / {_f(d.get('p90_ms'))} / {_f(d.get('max_ms'))}",
                f"{_f(p.get('median_ms'))} / {_f(p.get('p90_ms'))} / {_f(p.get('max_ms'))}",
                _f(r["interval_stdev_ms"]),
            ]
        )
    rs_rows = [
        [
            "flavour",
            "beat processes alive after",
            "runs",
            "slots sent twice",
            "sends < 0.5 s apart",
            "'beat raised exception' logged",
            "exceptions",
        ]
    ]
    for name, r in restart.items():
        rs_rows.append(
            [
                name,
                f"{r['beats_alive_after']} / 2",
                r["runs"],
                "-" if r["slots_sent_twice"] is None else r["slots_sent_twice"],
                r["sends_within_0_5_s"],
                r["exits_logged"],
                ", ".join(r["exit_exceptions"]) or "-",
            ]
        )
    md = f"""# bench.beat

{platform.platform()}, Python {platform.python_version()}, Celery {celery.__version__},
redis-py {redis.__version__}. Private redis-servers; `python -m bench beat`.

## Redis round trips per beat loop (schedule Redis; 1 s loop, 10 entries, 1 due each second)

{_table(rt_rows)}

A leader's loop: one script call (the kit: lease + reconciliation marker; RedBeat: lock
extension), the due-entry query (one pipeline), one pipeline per loaded entry (due ones and
the next one), and one pipeline per send (the entry's `last_run_at`). A standby pays one
round trip per loop. Broker publishes are on another Redis and not counted.

## Tick -> start latency (real beat + prefork worker, every-1-s entry, {SECONDS:g} s)

{_table(lat_rows)}

"due": kit = the run's slot (aligned to the interval); plain Celery = previous send + 1 s
(its own rule, so its runs drift by the loop's lateness each time).

## Redis restart with two beat replicas (schedule Redis down 3 s, no persistence)

{_table(rs_rows)}

Slots identify kit runs, so "slots sent twice" is the duplicate check; RedBeat's runs carry
no slot, so two sends of its 1 s entry less than 0.5 s apart would be the sign of two
senders (for the kit such a pair is the one catch-up run followed by the next slot).
RedBeat's exits: `ConnectionError` from the lock extension in `tick` while Redis is down,
`AttributeError` from `tick` calling `extend` on the lock its `beat_init` receiver never
got (the receiver's exception was swallowed by Celery's signal dispatch).
"""
    (RESULTS / "beat.md").write_text(md)
    print(md)


if __name__ == "__main__":  # pragma: no cover
    main()
