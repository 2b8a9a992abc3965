"""Countdowns on Redis: the kit's delay set vs plain Celery, in one run.

On a fresh private redis-server:

- publish rate (tasks/s) without and with a countdown (1 h), kit and plain Celery,
  interleaved rounds (medians); the kit's goal: with / without >= 0.95;
- mover throughput: N due messages moved by one mover (batches of ``delays.batch``),
  messages/s, Redis round trips per message, Redis commands per message (inside the
  script included, ``INFO commandstats``);
- due-to-enqueue lag (p50/p99) of N messages coming due over 10 s, default mover
  (every 1 s), read from the mover's own lag hook.

Writes ``bench/results/delays.md`` and ``.json``. ``BENCH_DELAYS_N`` (10000),
``BENCH_DELAYS_PUBLISH_N`` (2000), ``BENCH_DELAYS_ROUNDS`` (3).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from celery import Celery

from celery_kit import Settings, make_app
from celery_kit.delays.mover import Mover
from celery_kit.testing import RedisServer, wait_until
from celery_kit.topology.delays import move_hooks

RESULTS = Path(__file__).parent / "results"


def _kit(url: str, **env: str) -> Celery:
    environ = {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url, **env}
    app = make_app("bench_delays", settings=Settings(_environ=environ))
    app.conf.result_backend = "disabled"  # publish cost only
    return app


def _plain(url: str) -> Celery:
    return Celery("bench_plain", broker=url, set_as_current=False)


def _rate(app: Celery, n: int, countdown: float | None) -> tuple[float, float]:
    """(publishes/s wall clock, publisher CPU µs per publish)."""
    with app.producer_or_acquire() as producer:
        app.send_task("bench.noop", producer=producer)  # connect first
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(n):
            app.send_task("bench.noop", countdown=countdown, producer=producer)
        wall = time.perf_counter() - start
        return n / wall, (time.process_time() - cpu) / n * 1e6


def _usec(client: Any) -> int:
    return sum(int(v["usec"]) for v in client.info("commandstats").values())


def _publish_rates(server: RedisServer, n: int, rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, make in (("kit", _kit), ("plain", _plain)):
            for label, countdown in (("none", None), ("countdown", 3600.0)):
                db = server.fresh_db()
                app = make(server.url(db))
                client = server.client(db)
                before = _usec(client)
                rate, cpu_us = _rate(app, n, countdown)
                samples.setdefault(f"{name}_{label}", []).append(rate)
                samples.setdefault(f"{name}_{label}_cpu_us", []).append(cpu_us)
                # Redis server time per publish (commandstats, Lua included): not noisy
                usec = (_usec(client) - before) / n
                samples.setdefault(f"{name}_{label}_redis_us", []).append(usec)
                app.close()
                client.flushdb()
    return {k: statistics.median(v) for k, v in samples.items()}


def _calls(client: Any) -> int:
    return sum(int(v["calls"]) for v in client.info("commandstats").values())


def _mover_throughput(server: RedisServer, n: int) -> dict[str, float]:
    db = server.fresh_db()
    app = _kit(server.url(db))
    with app.producer_or_acquire() as producer:
        for _ in range(n):
            app.send_task("bench.noop", countdown=60, producer=producer)
    client = server.client(db)
    mover = Mover(app, clock=lambda: time.time() + 3600)
    mover.step()  # warm-up: leader lock, connection and script loaded
    moved_first = mover.stats.moved
    with app.producer_or_acquire() as producer:  # fill again: time a warm mover's drain
        for _ in range(n):
            app.send_task("bench.noop", countdown=60, producer=producer)
    calls = _calls(client)
    trips = mover.stats.round_trips
    start = time.perf_counter()
    moved = mover.move_due()
    elapsed = time.perf_counter() - start
    commands = _calls(client) - calls
    round_trips = mover.stats.round_trips - trips
    mover.stop()
    app.close()
    client.flushdb()
    if moved != n or moved_first != n:
        raise RuntimeError(f"moved {moved_first} then {moved}, expected {n} each")
    return {
        "moved": moved,
        "messages_per_s": moved / elapsed,
        "round_trips_per_message": round_trips / moved,
        "commands_per_message": commands / moved,
        "batch": mover.batch,
    }


def _lag(server: RedisServer, n: int) -> dict[str, float]:
    db = server.fresh_db()
    app = _kit(server.url(db))
    lags: list[float] = []
    move_hooks(app).append(lags.extend)
    lead = 20.0 + n / 1000  # publishing must end before the first is due
    start = time.time()
    with app.producer_or_acquire() as producer:
        for i in range(n):
            eta = start + lead + 10.0 * i / n
            when = datetime.fromtimestamp(eta, timezone.utc)
            app.send_task("bench.noop", eta=when, producer=producer)
    mover = Mover(app)  # default interval (delays.mover_interval_s = 1 s)
    mover.start()
    wait_until(lambda: len(lags) >= n, timeout_s=lead + 120, what="every message moved")
    mover.stop()
    app.close()
    server.client(db).flushdb()
    ordered = sorted(lags)
    return {
        "n": n,
        "p50_s": ordered[len(ordered) // 2],
        "p99_s": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max_s": ordered[-1],
        "interval_s": mover.interval_s,
    }


def main() -> None:
    n = int(os.environ.get("BENCH_DELAYS_N", "10000"))
    publish_n = int(os.environ.get("BENCH_DELAYS_PUBLISH_N", "2000"))
    rounds = int(os.environ.get("BENCH_DELAYS_ROUNDS", "3"))
    with RedisServer() as server:
        rates = _publish_rates(server, publish_n, rounds)
        mover = _mover_throughput(server, n)
        lag = _lag(server, n)
    RESULTS.mkdir(exist_ok=True)
    data = {"publish": rates, "mover": mover, "lag": lag, "n": n, "publish_n": publish_n}
    (RESULTS / "delays.json").write_text(json.dumps(data, indent=2) + "\n")
    kit_ratio = rates["kit_countdown"] / rates["kit_none"]
    plain_ratio = rates["plain_countdown"] / rates["plain_none"]
    lines = [
        "# Countdowns on Redis: the delay set",
        "",
        f"`python -m bench delays`: {publish_n} publishes per case, {rounds} interleaved"
        " rounds (medians), one private redis-server. Shared, noisy 2-core machine: compare"
        " the columns, not absolute values.",
        "",
        "## Publish rate (tasks/s)",
        "",
        "| | no countdown | countdown 1 h | with / without |",
        "|---|---|---|---|",
        f"| kit (countdown → delay set) | {rates['kit_none']:.0f}"
        f" | {rates['kit_countdown']:.0f} | {kit_ratio:.2f} (goal ≥ 0.95) |",
        f"| plain Celery (countdown → queue, held by a worker) | {rates['plain_none']:.0f}"
        f" | {rates['plain_countdown']:.0f} | {plain_ratio:.2f} |",
        f"| kit: publisher CPU µs per publish | {rates['kit_none_cpu_us']:.0f}"
        f" | {rates['kit_countdown_cpu_us']:.0f}"
        f" | {rates['kit_none_cpu_us'] / rates['kit_countdown_cpu_us']:.2f} (rate ratio by CPU) |",
        f"| plain Celery: publisher CPU µs per publish | {rates['plain_none_cpu_us']:.0f}"
        f" | {rates['plain_countdown_cpu_us']:.0f}"
        f" | {rates['plain_none_cpu_us'] / rates['plain_countdown_cpu_us']:.2f} |",
        f"| kit: Redis server µs per publish | {rates['kit_none_redis_us']:.1f}"
        f" | {rates['kit_countdown_redis_us']:.1f} | |",
        f"| plain Celery: Redis server µs per publish | {rates['plain_none_redis_us']:.1f}"
        f" | {rates['plain_countdown_redis_us']:.1f} | |",
        "",
        "## Mover",
        "",
        f"{mover['moved']} due messages moved by one warm mover, batches of {mover['batch']}:",
        "",
        "| messages/s | Redis round trips per message | Redis commands per message"
        " (inside the script) |",
        "|---|---|---|",
        f"| {mover['messages_per_s']:.0f} | {mover['round_trips_per_message']:.4f}"
        f" | {mover['commands_per_message']:.2f} |",
        "",
        "## Due-to-enqueue lag",
        "",
        f"{lag['n']} messages coming due over 10 s, mover every {lag['interval_s']:g} s (default):",
        "",
        "| p50 | p99 | max |",
        "|---|---|---|",
        f"| {lag['p50_s']:.3f} s | {lag['p99_s']:.3f} s | {lag['max_s']:.3f} s |",
        "",
    ]
    (RESULTS / "delays.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
