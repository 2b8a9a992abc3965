"""Prometheus alerting rules over the kit's metrics (celery-exporter's names), with runbooks.

"No worker" rules are rendered per queue from the worker profiles that consume it, so a
queue nobody consumes any more is noticed the moment its last worker goes.
"""

from __future__ import annotations

from typing import Any

from celery_kit.render.beat_alerts import beat_rules
from celery_kit.render.model import Context, dump_yaml

__all__ = ["alert_rules", "render_alerts"]


def _rule(
    name: str,
    expr: str,
    *,
    for_s: int,
    severity: str,
    summary: str,
    runbook: str,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": f"{for_s}s",
        "labels": {"severity": severity, **(labels or {})},
        "annotations": {"summary": summary, "runbook": runbook},
    }


def alert_rules(ctx: Context) -> dict[str, Any]:
    """The rule file as data: one group."""
    ctx.require_metrics("alerts")
    a = ctx.settings.deploy.alerts
    p = ctx.settings.metrics.prefix
    w = f"{a.window_s}s"
    length = f"max by (queue_name) ({p}_queue_length)"
    rules = [
        _rule(
            "CeleryQueueBacklog",
            f"{length} > {a.backlog_messages}"
            f" and max by (queue_name) (deriv({p}_queue_length[{w}])) >= 0",
            for_s=a.for_s,
            severity="warning",
            summary="{{ $labels.queue_name }}: {{ $value }} messages wait and the"
            " backlog is not shrinking",
            runbook="Check the queue's workers are up and consuming (kit health); scale the"
            " profile that consumes it (KEDA max_replicas) or find the slow task.",
        ),
        _rule(
            "CeleryQueueOldestMessage",
            f"max by (queue_name) ({p}_queue_oldest_message_age_seconds)"
            f" > {a.oldest_message_age_s}",
            for_s=a.for_s,
            severity="warning",
            summary="{{ $labels.queue_name }}: the oldest message waits for {{ $value }} s",
            runbook="A message waits longer than its users expect: see CeleryQueueBacklog;"
            " on a priority queue, low-priority messages may be starved by a steady"
            " high-priority load.",
        ),
    ]
    for queue, profiles in ctx.consumers().items():
        nodes = "|".join(f"({ctx.node_pattern(prof)})" for prof in profiles)
        up = f'sum({p}_worker_up{{hostname=~"{nodes}"}})' if profiles else "vector(0)"
        who = ", ".join(profiles) or "no worker profile"
        rules.append(
            _rule(
                "CeleryNoWorkerForQueue",
                f"({up} or vector(0)) < 1",
                for_s=a.for_s,
                severity="critical",
                summary=f"no live worker consumes queue {queue} (profiles: {who})",
                runbook=f"Start or fix the workers of {who}: their pods/units, then their"
                " logs; messages published to the queue wait until one is back.",
                labels={"queue_name": queue},
            )
        )
    failed = f"sum by (name) (rate({p}_task_failed_total[{w}]))"
    succeeded = f"sum by (name) (rate({p}_task_succeeded_total[{w}]))"
    rules += [
        _rule(
            "CeleryTaskFailureRatio",
            f"{failed} / ({succeeded} + {failed}) > {a.failure_ratio:g}",
            for_s=a.for_s,
            severity="warning",
            summary="{{ $labels.name }}: {{ $value | humanizePercentage }} of runs fail",
            runbook="Look at celery_task_failed_total by exception for the task, then at the"
            " DLQ (kit dlq list --task NAME) and the worker logs.",
        ),
        _rule(
            "CeleryDeadLetterQueueGrowing",
            f"max(delta({p}_dlq_entries[{w}])) > 0",
            for_s=0,
            severity="warning",
            summary="{{ $value }} task(s) dead-lettered recently",
            runbook="celery -A proj kit dlq list; fix the cause, then kit dlq replay ID (or"
            " purge).",
        ),
        _rule(
            "CeleryPoisonMessage",
            f'sum by (name) (increase({p}_task_failed_total{{exception="PoisonMessageError"}}'
            f"[{w}])) > 0",
            for_s=0,
            severity="critical",
            summary="{{ $labels.name }} killed its pool process repeatedly and was parked",
            runbook="The task crashes its process (OOM, segfault, os._exit): kit dlq show ID,"
            " fix the task or raise its memory, then kit dlq replay ID.",
        ),
        _rule(
            "CeleryQueueLatencyHigh",
            "histogram_quantile(0.95, sum by (le, queue_name)"
            f" (rate({p}_task_queue_wait_time_bucket[{w}]))) > {a.latency_p95_s:g}",
            for_s=a.for_s,
            severity="warning",
            summary="{{ $labels.queue_name }}: 95 % of tasks wait more than {{ $value }} s"
            " to start",
            runbook="Not enough workers for the queue's load, or long tasks hold every slot:"
            " scale the consuming profile or move slow tasks to a bulk queue.",
        ),
        *_delay_rules(ctx, prefix=p, window=w),
        _rule(
            "CeleryWorkersLost",
            f"count(max_over_time({p}_worker_up[{w}]) == 1)"
            f" - (count({p}_worker_up == 1) or vector(0)) > 0",
            for_s=0,
            severity="warning",
            summary="{{ $value }} worker(s) that were up in the last window are gone",
            runbook="Expected after a scale-down or rollout; otherwise check for OOM kills,"
            " crash loops and node failures (kubectl describe pod / journalctl -u).",
        ),
        _rule(
            "CeleryPoolProcessLost",
            f'sum by (name) (increase({p}_task_failed_total{{exception="WorkerLostError"}}'
            f"[{w}])) > 0",
            for_s=0,
            severity="warning",
            summary="{{ $labels.name }}: a pool process died while running it",
            runbook="Usually the OOM killer: compare the task's memory with the container"
            " limit and workers.*.max_memory_per_child_kb.",
        ),
    ]
    rules += beat_rules(ctx.settings, rule=_rule, prefix=p, window=w, for_s=a.for_s)
    return {"groups": [{"name": "celery-kit", "interval": f"{a.interval_s}s", "rules": rules}]}


def _delay_rules(ctx: Context, *, prefix: str, window: str) -> list[dict[str, Any]]:
    """Lag of the delay set's mover: only where workers run it and serve what it measured
    (a separate ``kit mover`` serves no metrics)."""
    settings = ctx.settings
    if not (settings.uses_delay_set and settings.delays.mover_in_worker):
        return []
    a = settings.deploy.alerts
    return [
        _rule(
            "CeleryDelayedTasksLate",
            "histogram_quantile(0.95, sum by (le)"
            f" (rate({prefix}_delay_lag_seconds_bucket[{window}]))) > {a.delay_lag_p95_s:g}",
            for_s=a.for_s,
            severity="warning",
            summary="delayed tasks reach their queue {{ $value }} s after they were due (p95)",
            runbook="The delay-set mover falls behind: find the leader in the worker logs"
            ' ("celery_kit mover: this process is the leader", or "cannot move delayed'
            ' messages"), check Redis latency and CPU, raise delays.batch for bursts of due'
            " tasks (kit delays count shows what waits). Tasks run late; none is lost.",
        )
    ]


def render_alerts(ctx: Context) -> dict[str, str]:
    """``prometheus/celery-kit-rules.yml``."""
    text = dump_yaml([alert_rules(ctx)], header=ctx.header("alerts"))
    return {"prometheus/celery-kit-rules.yml": text}
