"""bench.overhead: is the kit slower than plain Celery on the same broker? One run, interleaved.

Cases (each a real ``celery worker`` on its own queue, started once):

* brokers: a private redis-server (never the machine's 6379) and RabbitMQ
  (``CELERY_KIT_TEST_AMQP_URL``, default guest on 127.0.0.1; skipped with a note if down);
* pools: prefork (2 processes) and solo;
* flavours: ``plain`` (Celery's defaults), ``safe`` (plain Celery given the kit's Celery
  settings by hand), ``kit`` (``make_app`` defaults); on prefork also ``kit_metrics``,
  ``kit_idem`` (Redis) and ``kit_recycle`` (children replaced every 1000 tasks).

A run publishes N no-op tasks while every worker is SIGSTOPped, then times one worker
draining its queue (SIGCONT; the others idle; drained = the broker holds nothing for the
queue, so with early acks up to one prefetch, <= 8 tasks, may still be running) and reads its CPU
(main process + live and reaped pool processes). Rounds shuffle the case order; ratios are
paired within a round, reported as median [min-max] over rounds.

Then the publish rate of one producer (``apply_async`` in this process, no consumer), CPU
per message, interleaved the same way; on RabbitMQ with and without publisher confirms.

``BENCH_PROFILE=1`` adds one profiled run per main case (py-spy on the worker's main and
pool processes, and on this process while it publishes): ``overhead-profile.md``.

Environment: ``BENCH_OVERHEAD_N`` (tasks per run, 1500), ``BENCH_OVERHEAD_REPS`` (5),
``BENCH_OVERHEAD_PUBLISH_N`` (messages per publish run, 500). RabbitMQ + solo runs use
N / 4 tasks (latency-bound: one message in flight). ``BENCH_CASES``: comma-separated case
names (e.g. ``redis/prefork/kit,redis/prefork/kit_metrics``) runs only those workers,
without the publish runs, into ``overhead-cases.{md,json}`` (the full results stay).
``BENCH_ONLY=publish`` runs the publish part alone (no workers) and writes
``overhead-publish.{md,json}`` instead.
"""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import celery
import kombu
import redis
from kombu import Connection

from bench import _overhead_profile as prof
from bench._overhead_apps import build
from bench._overhead_confirms import MODES, RawProducer
from bench._overhead_render import render, render_profile, render_publish
from bench._proc import cpu_s, write_results
from celery_kit.testing import DEFAULT_AMQP_URL, RedisServer, WorkerFactory, WorkerProcess

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
N = int(os.environ.get("BENCH_OVERHEAD_N", "1500"))
REPS = int(os.environ.get("BENCH_OVERHEAD_REPS", "5"))
PUBLISH_N = int(os.environ.get("BENCH_OVERHEAD_PUBLISH_N", "500"))
PROFILE = os.environ.get("BENCH_PROFILE", "") not in ("", "0")
CASES = [c.strip() for c in os.environ.get("BENCH_CASES", "").split(",") if c.strip()]
ONLY = os.environ.get("BENCH_ONLY", "")
WARM = 200
PROFILED = ("plain", "safe", "kit", "kit_idem", "kit_metrics")
PREFORK_EXTRAS = {
    "redis": ("kit_metrics", "kit_idem", "kit_recycle", "kit_kombu"),
    "amqp": ("kit_recycle", "kit_prefetch4"),
}


@dataclass
class Case:
    """One worker: broker, pool, flavour, its queue and the publishing app."""

    broker: str
    pool: str
    flavour: str
    url: str
    queue: str
    worker: WorkerProcess | None = None
    publisher: celery.Celery | None = None
    drained: Callable[[], bool] = field(default=lambda: True)
    next_arg: int = 0

    @property
    def name(self) -> str:
        return f"{self.broker}/{self.pool}/{self.flavour}"

    def main_cpu(self) -> float:
        """CPU seconds of the worker's main process itself."""
        assert self.worker is not None
        return cpu_s(self.worker.pid)

    def tree_cpu(self) -> float:
        """CPU seconds of main + live pool processes + reaped ones (recycled children move
        from the live sum to the main's child counters when reaped: the total is steady)."""
        assert self.worker is not None
        live = sum(cpu_s(p) for p in self.worker.pool_pids())
        return cpu_s(self.worker.pid, with_reaped=True) + live

    def publish(self, n: int) -> None:
        assert self.publisher is not None
        task = self.publisher.tasks["bench.noop"]
        for i in range(self.next_arg, self.next_arg + n):
            task.apply_async((i,))  # distinct args: idempotency keys never repeat
        self.next_arg += n


def _redis_drained(client: redis.Redis, queue: str) -> Callable[[], bool]:
    def drained() -> bool:
        keys = [k for k in client.scan_iter(match=f"{queue}*") if client.type(k) == b"list"]
        return not (sum(int(client.llen(k)) for k in keys) + int(client.hlen("unacked")))

    return drained


def _amqp_drained(conn: Connection, queue: str) -> Callable[[], bool]:
    def drained() -> bool:
        _, ready, _ = conn.default_channel.queue_declare(queue=queue, passive=True)
        return not ready

    return drained


def one_run(case: Case, n: int, cases: list[Case]) -> tuple[float, float, float]:
    """Publish with every worker stopped; time ``case``'s worker draining its queue.

    The other workers are resumed with it (idle: their queues are empty) so that none
    stays stopped long enough to miss AMQP heartbeats.

    Returns: (tasks/s, main CPU µs/task, pool CPU µs/task).
    """
    assert case.worker is not None
    workers = [c.worker for c in cases if c.worker is not None]
    for w in workers:
        os.killpg(w.pid, signal.SIGSTOP)
    try:
        case.publish(n)
    finally:
        main0, tree0 = case.main_cpu(), case.tree_cpu()
        started = time.perf_counter()
        for w in (case.worker, *workers):
            os.killpg(w.pid, signal.SIGCONT)
    deadline = time.monotonic() + 600
    while not case.drained():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{case.name}: queue did not drain")
        time.sleep(0.005 if case.broker == "redis" else 0.02)
    elapsed = time.perf_counter() - started
    main = case.main_cpu() - main0
    pool = case.tree_cpu() - tree0 - main
    return n / elapsed, main / n * 1e6, pool / n * 1e6


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "samples": [round(v, 1) for v in values],
    }


def _n(case: Case) -> int:
    """Tasks per run: RabbitMQ + solo (one message in flight, a broker round trip per task)
    gets a quarter, or it alone would take most of the bench's time."""
    return max(200, N // 4) if (case.broker, case.pool) == ("amqp", "solo") else N


def throughput(cases: list[Case]) -> dict[str, dict[str, Any]]:
    """REPS interleaved rounds; per case: tasks/s and CPU µs/task, per round."""
    for case in cases:
        one_run(case, WARM, cases)
    rows: dict[str, dict[str, list[float]]] = {
        c.name: {"rate": [], "cpu": [], "main": [], "pool": []} for c in cases
    }
    for r in range(REPS):
        order = list(cases)
        random.shuffle(order)
        for case in order:
            rate, main, pool = one_run(case, _n(case), cases)
            row = rows[case.name]
            row["rate"].append(rate)
            row["main"].append(main)
            row["pool"].append(pool)
            row["cpu"].append(main + pool)
            print(f"  round {r + 1} {case.name}: {rate:.0f}/s, {main + pool:.0f} µs CPU/task")
    return {n: {k: _stats(v) | {"values": v} for k, v in row.items()} for n, row in rows.items()}


def _publisher(case: Case, *, confirm: bool | None = None) -> celery.Celery:
    env = {"CELERY_BROKER_URL": case.url, "BENCH_QUEUE": case.queue}
    app = build(case.flavour, environ=env)
    if case.broker == "amqp" and confirm is not None:
        options = dict(app.conf.broker_transport_options or {})
        options["confirm_publish"] = confirm
        app.conf.broker_transport_options = options
    return app


def publish_rates(urls: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One producer, no consumer: messages/s and CPU µs per ``apply_async``; on RabbitMQ
    also raw py-amqp producers (no confirms / confirm each / confirm per batch)."""
    variants: list[tuple[str, str, str, bool | None]] = []
    for broker in urls:
        variants += [(broker, "plain", "plain", None), (broker, "safe", "safe", None)]
        variants += [(broker, "kit", "kit", None)]
        if broker == "amqp":
            variants += [(broker, "plain + confirms", "plain", True)]
            variants += [(broker, "kit, confirms off", "kit", False)]
    senders: dict[str, Callable[[int], None]] = {}
    cleanups: list[Callable[[], None]] = []
    for broker, label, flavour, confirm in variants:
        queue = f"bench-publish-{uuid.uuid4().hex[:8]}"
        case = Case(broker, "-", flavour, urls[broker], queue)
        case.publisher = app = _publisher(case, confirm=confirm)
        senders[f"{broker}: {label}"] = case.publish
        cleanups.append(lambda app=app, queue=queue: _cleanup(app, queue))
    if "amqp" in urls:
        for mode in MODES:
            raw = RawProducer(urls["amqp"], f"bench-publish-{uuid.uuid4().hex[:8]}", mode)
            senders[f"amqp: {mode}"] = raw.publish
            cleanups.append(raw.close)
    samples: dict[str, dict[str, list[float]]] = {k: {"rate": [], "cpu": []} for k in senders}
    try:
        for send in senders.values():
            send(50)  # warm: connection, declarations
        for _ in range(REPS):
            order = list(senders)
            random.shuffle(order)
            for key in order:
                cpu0, t0 = time.process_time(), time.perf_counter()
                senders[key](PUBLISH_N)
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                samples[key]["rate"].append(PUBLISH_N / wall)
                samples[key]["cpu"].append(cpu / PUBLISH_N * 1e6)
                print(f"  publish {key}: {PUBLISH_N / wall:.0f}/s, {cpu / PUBLISH_N * 1e6:.0f} µs")
    finally:
        for cleanup in cleanups:
            cleanup()
    return {k: {m: _stats(v) | {"values": v} for m, v in s.items()} for k, s in samples.items()}


def _cleanup(app: celery.Celery, queue: str) -> None:
    with app.connection_for_write() as conn:
        _delete_queue(conn, queue)


def _delete_queue(conn: Connection, queue: str) -> None:
    try:
        if conn.transport.driver_type == "amqp":
            conn.default_channel.queue_delete(queue)
        else:
            conn.default_channel.client.delete(queue)
    except Exception as exc:  # clean-up only
        print(f"  could not delete {queue}: {exc}")


def profile_runs(cases: list[Case], workdir: Path) -> dict[str, Any]:
    """One py-spy-sampled run per main case and a sampled publish; per-task breakdowns."""
    out: dict[str, Any] = {}
    for case in cases:
        if case.pool != "prefork" or case.flavour not in PROFILED:
            continue
        assert case.worker is not None
        stem = f"profile-{case.broker}-{case.flavour}"
        pids = {"main": [case.worker.pid], "pool": case.worker.pool_pids()}
        paths = {k: [workdir / f"{stem}-{k}-{p}.txt" for p in v] for k, v in pids.items()}
        spies = [
            prof.record(p, path) for k in pids for p, path in zip(pids[k], paths[k], strict=True)
        ]
        time.sleep(1.0)  # py-spy attaches
        try:
            rate, main, pool = one_run(case, N, cases)
        finally:
            for spy in spies:
                prof.stop(spy)
        replaced = sorted(set(pids["pool"]) - set(case.worker.pool_pids()))
        out[case.name] = {
            "tasks_per_s": rate,
            "main_us": main,
            "pool_us": pool,
            "pool_children_replaced": len(replaced),
            "main": prof.per_task_us(prof.breakdown(*paths["main"]), main * N / 1e6, N),
            "pool": prof.per_task_us(prof.breakdown(*paths["pool"], main=False), pool * N / 1e6, N),
        }
        print(f"  profiled {case.name}: {rate:.0f}/s (py-spy attached)")
        pub = Case(case.broker, "-", case.flavour, case.url, f"bench-prof-{uuid.uuid4().hex[:8]}")
        pub.publisher = _publisher(pub)
        pub.publish(50)
        path = workdir / f"profile-publish-{case.broker}-{case.flavour}.txt"
        spy = prof.record(os.getpid(), path)
        time.sleep(1.0)
        cpu0 = time.process_time()
        try:
            pub.publish(PUBLISH_N)
        finally:
            cpu = time.process_time() - cpu0
            prof.stop(spy)
        with pub.publisher.connection_for_write() as conn:
            _delete_queue(conn, pub.queue)
        out[case.name]["publish_us"] = cpu / PUBLISH_N * 1e6
        out[case.name]["publish"] = prof.per_task_us(prof.breakdown(path), cpu, PUBLISH_N)
    return out


def _amqp_url() -> str | None:
    url = os.environ.get("CELERY_KIT_TEST_AMQP_URL") or DEFAULT_AMQP_URL
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.connect()
    except Exception as exc:
        print(f"RabbitMQ at {url} unreachable ({exc}): RabbitMQ cases skipped")
        return None
    return url


def _start(
    cases: list[Case], factory: WorkerFactory, server: RedisServer, amqp: str | None
) -> None:
    conns: list[Connection] = []
    workdir = factory.log_dir
    for db, case in enumerate(c for c in cases if c.broker == "redis"):
        case.url = server.url(db)
        case.drained = _redis_drained(server.client(db), case.queue)
    for case in cases:
        if case.broker == "amqp":
            assert amqp is not None
            conn = Connection(amqp)
            conns.append(conn)
            case.drained = _amqp_drained(conn, case.queue)
        env = {"CELERY_BROKER_URL": case.url, "BENCH_APP": case.flavour, "BENCH_QUEUE": case.queue}
        if case.flavour == "kit_metrics":  # prefork metrics count in one directory per worker
            env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metrics-", dir=workdir)
        case.worker = factory(
            "bench._overhead_worker",
            env=env,
            queues=[case.queue],
            concurrency=2 if case.pool == "prefork" else 1,
            pool=case.pool,
            pythonpath=[ROOT],
            cwd=ROOT,
        )
        # filling a queue is not what is measured: publish without confirms (same message)
        case.publisher = _publisher(case, confirm=False)
        print(f"  started {case.name}", flush=True)


def publish_only() -> None:
    """``BENCH_ONLY=publish``: the publish rates alone; ``overhead-publish.{md,json}``."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    started, load_before = time.time(), os.getloadavg()
    amqp = _amqp_url()
    with RedisServer(workdir=workdir) as server:
        urls = {"redis": server.url(15), **({"amqp": amqp} if amqp else {})}
        print(f"publish rate (one producer), {PUBLISH_N} calls per run, {REPS} rounds")
        pub = publish_rates(urls)
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)) + " UTC",
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "rounds": REPS,
        "publish_n": PUBLISH_N,
        "publish": pub,
    }
    write_results("overhead-publish", report, render_publish(report))


def main() -> None:
    """Run the comparison; write bench/results/overhead.{md,json} (and the profile)."""
    if ONLY == "publish":
        publish_only()
        return
    if ONLY:
        raise SystemExit(f"BENCH_ONLY={ONLY!r}: the only part that runs alone is 'publish'")
    workdir = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    factory = WorkerFactory(workdir)
    started = time.time()
    load_before = os.getloadavg()
    amqp = _amqp_url()
    tag = uuid.uuid4().hex[:6]
    cases: list[Case] = []
    for broker in ("redis", "amqp") if amqp else ("redis",):
        for pool in ("prefork", "solo"):
            extras = PREFORK_EXTRAS[broker] if pool == "prefork" else ()
            for flavour in ("plain", "safe", "kit", *extras):
                queue = f"bench-{pool}-{flavour}-{tag}".replace("_", "-")
                cases.append(Case(broker, pool, flavour, amqp or "", queue))
    if CASES:
        unknown = sorted(set(CASES) - {c.name for c in cases})
        if unknown:
            known = ", ".join(c.name for c in cases)
            raise SystemExit(f"BENCH_CASES: no case {', '.join(unknown)}; the cases: {known}")
        cases = [c for c in cases if c.name in CASES]
    profile: dict[str, Any] = {}
    with RedisServer(workdir=workdir) as server:
        try:
            print(f"starting {len(cases)} workers", flush=True)
            _start(cases, factory, server, amqp)
            print(f"throughput: {N} no-op tasks per run, {REPS} rounds", flush=True)
            tput = throughput(cases)
            urls = {"redis": server.url(15), **({"amqp": amqp} if amqp else {})}
            pub: dict[str, Any] = {}
            if not CASES:
                print("publish rate (one producer)", flush=True)
                pub = publish_rates(urls)
            if PROFILE:
                print("profiles (py-spy)", flush=True)
                profile = profile_runs(cases, workdir)
        finally:
            factory.stop_all()
            for case in cases:
                if case.broker == "amqp" and case.publisher is not None:
                    with case.publisher.connection_for_write() as conn:
                        _delete_queue(conn, case.queue)
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)) + " UTC",
        "duration_s": round(time.time() - started, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "versions": {
            "celery": celery.__version__,
            "kombu": kombu.__version__,
            "redis-py": redis.__version__,
            "hiredis": _hiredis(),
        },
        "n_per_run": N,
        "rounds": REPS,
        "publish_n": PUBLISH_N,
        "throughput": tput,
        "publish": pub,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = "overhead-cases" if CASES else "overhead"
    write_results(stem, report, render(report))
    if profile:
        when = {"when": report["when"], "load": report["load_before"], "n": N}
        (RESULTS / "overhead-profile.json").write_text(json.dumps(profile, indent=2) + "\n")
        (RESULTS / "overhead-profile.md").write_text(render_profile(profile, when))
        print(f"raw py-spy stacks: {workdir}")


def _hiredis() -> str | None:
    try:
        import hiredis  # optional: reported, not required
    except ImportError:
        return None
    return str(hiredis.__version__)
