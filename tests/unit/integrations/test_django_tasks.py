"""Django Tasks backend pieces that need no Django: priority table, status map, runner."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from celery import Celery, states

from celery_kit import Priority, Settings, make_app
from celery_kit.integrations.django_tasks_support import (
    PRIORITY_TABLE,
    EnvelopeStore,
    django_status,
    envelope_times,
    kit_priority,
    register_runner,
)


@pytest.mark.parametrize(
    ("django_priority", "kit"),
    [
        (100, Priority.HIGHEST),
        (88, 9),
        (87, 8),
        (50, Priority.HIGH),
        (12, Priority.NORMAL),
        (0, Priority.NORMAL),
        (-10, Priority.NORMAL),
        (-11, 4),
        (-50, Priority.LOW),
        (-90, 1),
        (-91, Priority.LOWEST),
        (-100, Priority.LOWEST),
    ],
)
def test_priority_table_rows(django_priority: int, kit: int) -> None:
    assert kit_priority(django_priority) == kit


def test_priority_mapping_is_monotonic_and_covers_both_scales() -> None:
    levels = [kit_priority(p) for p in range(-100, 101)]
    assert levels == sorted(levels)
    assert set(levels) == set(range(10))
    assert [bound for bound, _ in PRIORITY_TABLE] == sorted(
        (bound for bound, _ in PRIORITY_TABLE), reverse=True
    )


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (states.PENDING, "READY"),
        (states.RECEIVED, "READY"),
        (states.RETRY, "READY"),
        (states.STARTED, "RUNNING"),
        ("PROGRESS", "RUNNING"),
        (states.SUCCESS, "SUCCESSFUL"),
        (states.FAILURE, "FAILED"),
        (states.REVOKED, "FAILED"),
        (states.REJECTED, "FAILED"),
    ],
)
def test_celery_states_map_to_django_statuses(state: str, status: str) -> None:
    assert django_status(state) == status


def test_every_celery_state_has_a_mapping() -> None:
    assert {django_status(s) for s in states.ALL_STATES} <= {
        "READY",
        "RUNNING",
        "SUCCESSFUL",
        "FAILED",
    }
    assert all(django_status(s) in ("SUCCESSFUL", "FAILED") for s in states.READY_STATES)


def test_envelope_times_parse_iso_and_default_worker_ids() -> None:
    times = envelope_times({"enqueued_at": "2026-01-02T03:04:05+00:00"})
    assert times["enqueued_at"].isoformat() == "2026-01-02T03:04:05+00:00"
    assert (times["started_at"], times["worker_ids"]) == (None, [])


def test_envelope_store_needs_a_key_value_result_backend() -> None:
    amqp_only = make_app("t", settings=Settings(_environ={}, broker_url="amqp://h//"))
    assert EnvelopeStore.for_app(amqp_only) is None
    with pytest.raises(Exception, match=r"set result_backend \(e\.g\. redis://"):
        EnvelopeStore.require(None, amqp_only)
    redis_app = make_app("t", settings=Settings(_environ={}, broker_url="redis://h:1/0"))
    assert isinstance(EnvelopeStore.for_app(redis_app), EnvelopeStore)


def _report(context: Any, report_id: int, fmt: str = "pdf") -> str:
    return f"{report_id}.{fmt}"


def test_runner_takes_the_django_signature_without_context_and_kit_options() -> None:
    app: Celery = make_app("t", settings=Settings(_environ={}, broker_url="redis://h:1/0"))
    calls: list[tuple[Any, ...]] = []
    register_runner(
        app,
        name="proj.reports._report",
        func=_report,
        takes_context=True,
        call=lambda task, envelope, args, kwargs: calls.append((envelope, args, kwargs)),
        store=lambda: None,
        options={"lock": "report:{report_id}"},
    )
    task = app.tasks["proj.reports._report"]
    assert list(inspect.signature(task.run).parameters) == ["report_id", "fmt"]
    assert task.lock == "report:{report_id}"
    # Celery checks arguments against that signature at publish time
    with pytest.raises(TypeError):
        task.apply_async((1, "pdf", "extra"))
    task.run(7, fmt="csv")
    assert calls == [(None, (7,), {"fmt": "csv"})]
