"""bench.overhead: the Markdown of ``overhead.md`` and ``overhead-profile.md``."""

from __future__ import annotations

import statistics
from typing import Any

DASH = "\u2013"  #: en dash between a range's ends

#: (row, numerator, denominator, metric, goal, higher is better)
GOALS: tuple[tuple[str, str, str, str, float, bool], ...] = (
    (
        "Redis: kit / plain defaults (prefork)",
        "redis/prefork/kit",
        "redis/prefork/plain",
        "rate",
        1.00,
        True,
    ),
    (
        "Redis: kit / plain hand-safe (prefork)",
        "redis/prefork/kit",
        "redis/prefork/safe",
        "rate",
        1.00,
        True,
    ),
    (
        "RabbitMQ: kit / plain defaults (prefork)",
        "amqp/prefork/kit",
        "amqp/prefork/plain",
        "rate",
        0.95,
        True,
    ),
    (
        "RabbitMQ: kit / plain hand-safe (prefork)",
        "amqp/prefork/kit",
        "amqp/prefork/safe",
        "rate",
        1.00,
        True,
    ),
    (
        "kit with metrics / kit without (Redis, prefork)",
        "redis/prefork/kit_metrics",
        "redis/prefork/kit",
        "rate",
        0.98,
        True,
    ),
    (
        "kit idempotency on / off (Redis, prefork)",
        "redis/prefork/kit_idem",
        "redis/prefork/kit",
        "rate",
        0.92,
        True,
    ),
)
PUBLISH_GOALS: tuple[tuple[str, str, str, str, float, bool], ...] = (
    (
        "RabbitMQ publish rate: kit / plain with confirms (same guarantee)",
        "amqp: kit",
        "amqp: plain + confirms",
        "rate",
        0.90,
        True,
    ),
    (
        "RabbitMQ publish rate: kit / plain defaults (no confirms)",
        "amqp: kit",
        "amqp: plain",
        "rate",
        0.0,
        True,
    ),
    (
        "`apply_async` CPU per call, kit / plain (Redis)",
        "redis: kit",
        "redis: plain",
        "cpu",
        1.03,
        False,
    ),
    (
        "RabbitMQ publish rate: confirm per batch / confirm each (py-amqp)",
        "amqp: py-amqp: confirm per batch",
        "amqp: py-amqp: confirm each",
        "rate",
        0.0,
        True,
    ),
    (
        "`apply_async` CPU per call, kit / plain (RabbitMQ, confirms off in both)",
        "amqp: kit, confirms off",
        "amqp: plain",
        "cpu",
        1.03,
        False,
    ),
)


def _paired(rows: dict[str, Any], num: str, den: str, metric: str) -> list[float] | None:
    if num not in rows or den not in rows:
        return None
    a, b = rows[num][metric]["values"], rows[den][metric]["values"]
    return [x / y for x, y in zip(a, b, strict=True) if y]


def _fmt_ratio(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}{DASH}{max(values):.2f}]"


Goal = tuple[str, str, str, str, float, bool]


def _goal_rows(rows: dict[str, Any], goals: tuple[Goal, ...]) -> list[str]:
    out = []
    for label, num, den, metric, goal, higher in goals:
        values = _paired(rows, num, den, metric)
        if not values:
            out.append(f"| {label} | not measured | | |")
            continue
        med = statistics.median(values)
        if not goal:
            verdict, shown = "(reference)", "—"
        else:
            met = med >= goal if higher else med <= goal
            verdict = "met" if met else "**missed**"
            shown = f"{'≥' if higher else '≤'} {goal:.2f}"
        out.append(f"| {label} | {_fmt_ratio(values)} | {shown} | {verdict} |")
    return out


def _range(stat: dict[str, Any], digits: int = 0) -> str:
    return f"{stat['median']:.{digits}f} [{stat['min']:.{digits}f}{DASH}{stat['max']:.{digits}f}]"


def render(report: dict[str, Any]) -> str:
    tput, pub = report["throughput"], report["publish"]
    v = report["versions"]
    lines = [
        "# bench.overhead",
        "",
        f"{report['when']}, {report['duration_s']} s, {report['machine']['cpus']} CPUs,"
        f" Python {report['machine']['python']}, Celery {v['celery']}, kombu {v['kombu']},"
        f" redis-py {v['redis-py']}, hiredis {v['hiredis'] or 'not installed'}."
        f" Load average (1/5/15 min) before: {report['load_before']}, after:"
        f" {report['load_after']} (the machine is shared).",
        "",
        f"{report['n_per_run']} no-op tasks (ignore_result) per run (RabbitMQ + solo: a"
        f" quarter), {report['rounds']}"
        " rounds in shuffled order, each worker draining its own queue (the others idle);"
        ' On Redis the kit runs its own transport (`broker.transport = "kit"`, the'
        " default: Lua consume + ack); plain Celery and hand-safe run kombu's; `kit_kombu`"
        " is the kit on kombu's transport. Ratios are paired within a round:"
        " median [min-max] over rounds. Reproduce: `make bench BENCH=overhead`.",
        "",
        "## Goals",
        "",
        "| measure | ratio | goal | |",
        "|---|---|---|---|",
        *_goal_rows(tput, GOALS),
        *_goal_rows(pub, PUBLISH_GOALS),
        "",
        "The verdict reads the median; a range that straddles the goal means this run cannot"
        " tell either way.",
        "",
        "## Every ratio (tasks/s and worker CPU per task, paired per round)",
        "",
        "| broker / pool | kit / plain (rate) | kit / hand-safe (rate) | kit / plain (CPU) |"
        " kit / hand-safe (CPU) |",
        "|---|---|---|---|---|",
    ]
    for broker in ("redis", "amqp"):
        for pool in ("prefork", "solo"):
            base = f"{broker}/{pool}"
            cells = []
            for metric in ("rate", "cpu"):
                for den in ("plain", "safe"):
                    values = _paired(tput, f"{base}/kit", f"{base}/{den}", metric)
                    cells.append(_fmt_ratio(values) if values else "—")
            lines.append(f"| {base} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
    lines += ["", "| variant / kit defaults (prefork) | rate | CPU |", "|---|---|---|"]
    for broker in ("redis", "amqp"):
        for extra in ("kit_metrics", "kit_idem", "kit_recycle", "kit_kombu", "kit_prefetch4"):
            rate = _paired(tput, f"{broker}/prefork/{extra}", f"{broker}/prefork/kit", "rate")
            cpu = _paired(tput, f"{broker}/prefork/{extra}", f"{broker}/prefork/kit", "cpu")
            if rate and cpu:
                lines.append(f"| {broker}: {extra} | {_fmt_ratio(rate)} | {_fmt_ratio(cpu)} |")
    lines += [
        "",
        "## Per case",
        "",
        "| case | tasks/s | CPU µs/task (worker) | of which main | of which pool |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in tput.items():
        lines.append(
            f"| {name} | {_range(row['rate'])} | {_range(row['cpu'])} | {_range(row['main'])}"
            f" | {_range(row['pool'])} |"
        )
    lines += [
        "",
        f"## Publish, one producer ({report['publish_n']} messages per run, no consumer)",
        "",
        "| producer | messages/s | CPU µs/message |",
        "|---|---:|---:|",
    ]
    for name, row in pub.items():
        lines.append(f"| {name} | {_range(row['rate'])} | {_range(row['cpu'])} |")
    lines += [
        "",
        "The `py-amqp:` rows publish a persistent message of a no-op task's size straight",
        "through py-amqp: the price of confirms themselves, per message or per batch of",
        f"{report['publish_n']} (kombu's `Producer` only offers per message).",
        "",
        "Notes. Worker CPU is the main process plus its pool processes (live, and reaped",
        "ones through the main's child counters, so replaced children are counted), not",
        'the broker\'s; "main" is the main process alone. `safe` is plain Celery',
        "with `Settings().celery_conf()` applied by hand: the kit's settings without its",
        "code. `kit_recycle` is the kit with `worker.max_tasks_per_child = 1000` (the old",
        "default); its workers live through every round, so children reach 1000 tasks.",
        "`kit_prefetch4` is the kit with `worker.prefetch_multiplier = 4` (Celery's default,",
        "what a bulk worker profile may set; with 60 s time limits, which the kit requires",
        "for that prefetch under RabbitMQ's consumer_timeout): the price of a prefetch of 1.",
        "",
    ]
    return "\n".join(lines)


def render_profile(profile: dict[str, Any], when: dict[str, Any]) -> str:
    lines = [
        "# bench.overhead: where the time goes (py-spy)",
        "",
        f"{when['when']}, load {when['load']}. One run of {when['n']} no-op tasks per case"
        " with py-spy (200 Hz, one per process) on the worker's main and pool processes;"
        " CPU measured from /proc and"
        " spread over components by sample share (the deepest matching frame wins, so a kit"
        " wrapper around Celery's handler is Celery's cost and only the kit's own work is"
        " the kit's). Sampling slows the run; compare shares, not rates. Producer: py-spy on"
        " the bench process during one publish run. Reproduce: `make bench-profile`.",
        "",
    ]
    for name, row in profile.items():
        lines += [f"## {name}", ""]
        for part, total in (("main", "main_us"), ("pool", "pool_us"), ("publish", "publish_us")):
            if part not in row:
                continue
            lines += [
                f"{part}: {row[total]:.0f} µs CPU per task",
                "",
                "| component | µs/task |",
                "|---|---:|",
            ]
            lines += [f"| {k} | {v:.1f} |" for k, v in row[part].items()]
            lines.append("")
    return "\n".join(lines)


#: Publish-only run: CPU ratios beside the goals (confirms on in both, for reference).
PUBLISH_CPU_REFERENCE: tuple[Goal, ...] = (
    (
        "`apply_async` CPU per call, kit / plain (RabbitMQ, confirms on in both)",
        "amqp: kit",
        "amqp: plain + confirms",
        "cpu",
        0.0,
        False,
    ),
)


def render_publish(report: dict[str, Any]) -> str:
    """``BENCH_ONLY=publish``: the publish goals and rows alone."""
    pub = report["publish"]
    lines = [
        "# bench.overhead: publish only (`BENCH_ONLY=publish`)",
        "",
        f"{report['when']}, load {report['load_before']} before, {report['load_after']}"
        f" after; {report['rounds']} interleaved rounds of {report['publish_n']} calls per"
        f" producer; ratios paired within a round, median [min{DASH}max].",
        "",
        "| measure | kit / plain | goal | verdict |",
        "|---|---|---|---|",
        *_goal_rows(pub, PUBLISH_GOALS + PUBLISH_CPU_REFERENCE),
        "",
        "| producer | messages/s | CPU µs/message |",
        "|---|---:|---:|",
    ]
    lines += [f"| {n} | {_range(r['rate'])} | {_range(r['cpu'])} |" for n, r in pub.items()]
    return "\n".join([*lines, ""])
