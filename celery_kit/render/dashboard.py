"""A Grafana dashboard over the kit's metrics: throughput, failures, runtime, queues (also
by priority), latency, workers and the dead-letter queue.
"""

from __future__ import annotations

from typing import Any

from celery_kit.render.model import Context, dump_json

__all__ = ["dashboard", "dashboard_queries", "render_dashboard"]

#: Grafana's rate window variable (at least four scrape intervals).
RATE = "$__rate_interval"
_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Panel title → what the panel cannot show (Grafana's panel description).
_DESCRIPTIONS = {
    "Queue length per priority": (
        "Messages waiting at each kit priority (9 = most urgent), empty levels hidden. Redis"
        " only: RabbitMQ cannot count a queue's messages by priority without consuming them,"
        ' so its queues appear in "Queue length (all priorities)" alone.'
    ),
}


def _panels(ctx: Context) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """``(title, unit, [(query, legend)])`` per panel."""
    p = ctx.settings.metrics.prefix
    by_name = "sum by (name)"
    return [
        ("Tasks succeeded / s", "ops", [
            (f"{by_name} (rate({p}_task_succeeded_total[{RATE}]))", "{{name}}")]),
        ("Tasks failed / s", "ops", [
            (f"sum by (name, exception) (rate({p}_task_failed_total[{RATE}]))",
             "{{name}} {{exception}}")]),
        ("Retries, rejections, revocations / s", "ops", [
            (f"{by_name} (rate({p}_task_retried_total[{RATE}]))", "retried {{name}}"),
            (f"{by_name} (rate({p}_task_rejected_total[{RATE}]))", "rejected {{name}}"),
            (f"{by_name} (rate({p}_task_revoked_total[{RATE}]))", "revoked {{name}}")]),
        ("Runtime p50 / p95", "s", [
            (f"histogram_quantile(0.5, sum by (le, name) (rate({p}_task_runtime_bucket[{RATE}])))",
             "p50 {{name}}"),
            (f"histogram_quantile(0.95, sum by (le, name) (rate({p}_task_runtime_bucket[{RATE}])))",
             "p95 {{name}}")]),
        ("Queue length (all priorities)", "short", [
            (f"max by (queue_name) ({p}_queue_length)", "{{queue_name}}")]),
        ("Queue length per priority", "short", [
            (f"max by (queue_name, priority) ({p}_queue_length_by_priority) > 0",
             "{{queue_name}} priority {{priority}}")]),
        ("Oldest waiting message", "s", [
            (f"max by (queue_name) ({p}_queue_oldest_message_age_seconds)", "{{queue_name}}")]),
        ("Publish → start latency p95", "s", [
            ("histogram_quantile(0.95, sum by (le, queue_name)"
             f" (rate({p}_task_queue_wait_time_bucket[{RATE}])))", "{{queue_name}}")]),
        ("Workers up", "short", [
            (f"sum({p}_worker_up{{hostname=~\"{ctx.node_pattern(prof)}\"}})", prof)
            for prof in ctx.profiles]),
        ("Tasks running", "short", [
            (f"sum by (hostname) ({p}_worker_tasks_active)", "{{hostname}}")]),
        ("Dead-letter queue", "short", [(f"max({p}_dlq_entries)", "entries")]),
    ]  # fmt: skip


def _target(index: int, query: str, legend: str) -> dict[str, Any]:
    return {
        "refId": chr(ord("A") + index),
        "datasource": _DATASOURCE,
        "expr": query,
        "legendFormat": legend,
    }


def dashboard_queries(ctx: Context) -> list[str]:
    """Every PromQL expression of the dashboard (Grafana variables included)."""
    return [query for _, _, targets in _panels(ctx) for query, _ in targets]


def dashboard(ctx: Context) -> dict[str, Any]:
    """The dashboard JSON model."""
    ctx.require_metrics("dashboard")
    panels = []
    for i, (title, unit, targets) in enumerate(_panels(ctx)):
        described = {"description": _DESCRIPTIONS[title]} if title in _DESCRIPTIONS else {}
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": title,
                **described,
                "datasource": _DATASOURCE,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [_target(j, q, legend) for j, (q, legend) in enumerate(targets)],
            }
        )
    return {
        "title": f"Celery ({ctx.settings.deploy.name})",
        "uid": f"celery-kit-{ctx.settings.deploy.name}"[:40],
        "tags": ["celery", "celery_kit"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "panels": panels,
    }


def render_dashboard(ctx: Context) -> dict[str, str]:
    """``grafana/celery-kit-dashboard.json``."""
    return {"grafana/celery-kit-dashboard.json": dump_json(dashboard(ctx))}
