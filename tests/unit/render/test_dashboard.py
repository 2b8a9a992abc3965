"""The Grafana dashboard: its panels, their queries and the metrics they read."""

from __future__ import annotations

import json
from typing import Any

from celery_kit.render import render
from tests.integration.support.render import production


def panels(**overrides: Any) -> dict[str, dict[str, Any]]:
    files = render("dashboard", production(**overrides), app="proj")
    model = json.loads(files["grafana/celery-kit-dashboard.json"])
    return {p["title"]: p for p in model["panels"]}


def test_queue_length_per_priority_reads_the_per_priority_gauge() -> None:
    panel = panels()["Queue length per priority"]
    (target,) = panel["targets"]
    assert target["expr"] == ("max by (queue_name, priority) (celery_queue_length_by_priority) > 0")
    assert "{{priority}}" in target["legendFormat"]
    assert "RabbitMQ" in panel["description"]  # says why RabbitMQ queues are not there
    # the whole-queue panel keeps celery-exporter's series
    whole = panels()["Queue length (all priorities)"]["targets"][0]["expr"]
    assert whole == "max by (queue_name) (celery_queue_length)"


def test_queries_follow_the_metrics_prefix() -> None:
    found = panels(metrics={"enabled": True, "prefix": "orders"})
    expr = found["Queue length per priority"]["targets"][0]["expr"]
    assert "orders_queue_length_by_priority" in expr
    assert all("celery_" not in t["expr"] for p in found.values() for t in p["targets"])


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    found = list(panels().values())
    assert len({p["id"] for p in found}) == len(found)
    cells = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in found]
    assert len(set(cells)) == len(cells)
