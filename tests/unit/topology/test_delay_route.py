"""The delay route: which messages the publish path stamps for the delay set."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from celery_kit import ConfigError, CountdownTooLongError, Settings, make_app
from celery_kit.cli import kit
from celery_kit.config.celery_conf import redelivery_budget
from celery_kit.config.delays import DUE_AT_HEADER
from celery_kit.topology.delays import delay_route, due_epoch, set_clock

DEAD = "redis://127.0.0.1:1/0"
AMQP = "amqp://guest:guest@127.0.0.1:1//"


def settings(**kwargs: Any) -> Settings:
    return Settings(_environ={}, **{"broker_url": DEAD, **kwargs})


def app_with(**kwargs: Any) -> Any:
    return make_app("t", settings=settings(**kwargs))


def test_the_delay_set_is_used_only_with_the_kit_transport_on_redis() -> None:
    assert settings().uses_delay_set
    assert not settings(broker={"transport": "kombu"}).uses_delay_set
    assert not settings(delays={"enabled": False}).uses_delay_set
    assert not settings(broker_url=AMQP).uses_delay_set


def test_threshold_is_derived_from_the_mover_interval_unless_given() -> None:
    assert settings().delays.effective_threshold_s == 4.0
    assert settings(delays={"mover_interval_s": 0.5}).delays.effective_threshold_s == 3.5
    assert settings(delays={"threshold_s": 10}).delays.effective_threshold_s == 10


def test_the_transport_gets_a_per_prefix_delay_key() -> None:
    options = settings(redis={"key_prefix": "shop"}).celery_conf()["broker_transport_options"]
    assert options["delay_key"] == "_celery_kit.delayed.shop"
    kombu = settings(broker={"transport": "kombu"}).celery_conf()["broker_transport_options"]
    assert "delay_key" not in kombu


def test_the_redelivery_budget_no_longer_includes_countdowns_on_redis() -> None:
    assert redelivery_budget(settings()).max_delay_s == 4.0  # the threshold only
    assert redelivery_budget(settings(broker_url=AMQP)).max_delay_s == 600.0


def _headers(eta: datetime | None) -> dict[str, Any]:
    return {"eta": eta.isoformat() if eta else None}


def test_stamp_routes_only_delays_above_the_threshold() -> None:
    app = app_with()
    now = 1_000_000.0
    set_clock(app, lambda: now)
    route = delay_route(app)
    at = datetime.fromtimestamp(now, timezone.utc)
    far, near = _headers(at + timedelta(seconds=60)), _headers(at + timedelta(seconds=3))
    route.stamp(far, None)
    route.stamp(near, None)
    assert far[DUE_AT_HEADER] == now + 60
    assert DUE_AT_HEADER not in near
    none = _headers(None)
    route.stamp(none, None)
    assert DUE_AT_HEADER not in none


def test_stamp_clears_a_header_copied_by_retry() -> None:
    app = app_with()
    set_clock(app, lambda: 0.0)
    stale = {DUE_AT_HEADER: 123.0, "other": 1}
    headers = _headers(None)
    assert delay_route(app).stamp(headers, stale) == {"other": 1}
    later = _headers(datetime.fromtimestamp(600, timezone.utc))
    assert delay_route(app).stamp(later, dict(stale)) == {DUE_AT_HEADER: 600.0, "other": 1}


def test_stamp_is_off_without_the_delay_set() -> None:
    app = app_with(broker={"transport": "kombu"})
    headers = _headers(datetime.now(timezone.utc) + timedelta(seconds=100))
    delay_route(app).stamp(headers, None)
    assert DUE_AT_HEADER not in headers


def test_due_epoch_reads_iso_text_and_naive_utc() -> None:
    assert due_epoch("1970-01-01T00:01:00+00:00") == 60.0
    assert due_epoch("1970-01-01T00:01:00") == 60.0
    assert due_epoch(None) is None


def test_long_countdowns_are_accepted_on_redis_up_to_the_sanity_bound() -> None:
    app = app_with(delays={"max_delay_s": 4 * 24 * 3600})
    # refused before any connection: the bound is checked when the message is built
    with pytest.raises(CountdownTooLongError, match=r"delays\.max_delay_s"):
        app.send_task("t.far", countdown=5 * 24 * 3600)
    with pytest.raises(CountdownTooLongError, match="unit mix-up"):
        app.send_task("t.far", eta=datetime.now(timezone.utc) + timedelta(days=5))


def test_rabbitmq_keeps_the_max_countdown_guard() -> None:
    app = app_with(broker_url=AMQP)
    with pytest.raises(CountdownTooLongError, match=r"tasks\.max_countdown_s \(600 s\)"):
        app.send_task("t.far", countdown=3 * 24 * 3600)


def test_delay_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="mover_interval_s"):
        settings(delays={"mover_interval_s": 0})
    with pytest.raises(ValueError, match="batch"):
        settings(delays={"batch": 0})


def test_kit_delays_without_a_delay_set_says_what_to_change() -> None:
    app = app_with(broker_url=AMQP)
    result = CliRunner().invoke(kit, ["delays", "count"], obj=SimpleNamespace(app=app))
    assert result.exit_code != 0
    assert 'broker.transport = "kit"' in result.output
    moved = CliRunner().invoke(kit, ["mover"], obj=SimpleNamespace(app=app))
    assert moved.exit_code != 0
    assert "delay set" in moved.output


def test_the_delay_set_refuses_a_plain_app() -> None:
    from celery import Celery

    from celery_kit.delays.ops import DelaySet

    with pytest.raises(ConfigError, match="make_app"):
        DelaySet(Celery("plain", set_as_current=False))


def test_kit_config_shows_the_delay_derivation() -> None:
    app = app_with(delays={"mover_interval_s": 2})
    result = CliRunner().invoke(kit, ["config"], obj=SimpleNamespace(app=app))
    assert result.exit_code == 0, result.output
    assert "countdowns/ETAs more than 5 s ahead" in result.output
    off = app_with(delays={"enabled": False})
    shown = CliRunner().invoke(kit, ["config"], obj=SimpleNamespace(app=off)).output
    assert "workers hold countdowns/ETAs up to tasks.max_countdown_s (600 s" in shown


def test_the_message_check_reads_positional_and_keyword_calls_alike() -> None:
    amqp = app_with(broker_url=AMQP).amqp  # tasks.max_countdown_s = 600
    later = {"task": "t.later", "options": {"countdown": 3600}}
    hour = datetime.now(timezone.utc) + timedelta(hours=1)
    # Celery's send_task passes everything up to ``chain`` (the 21st) positionally
    head: tuple[Any, ...] = ("id", "t.x", (), {}, None, None, None, None, None, 0)
    tail: tuple[Any, ...] = (None, None, None, False, None, None, None)
    refused = [
        lambda: amqp.as_task_v2("id", "t.x", countdown=3600),
        lambda: amqp.as_task_v2(task_id="id", name="t.x", eta=hour),
        lambda: amqp.as_task_v2("id", "t.x", callbacks=[later]),
        lambda: amqp.as_task_v2(*head, None, None, None, *tail, [later]),  # chain
        lambda: amqp.as_task_v2(*head, None, None, [later], *tail, None),  # errbacks
        lambda: amqp.as_task_v2(
            "id", "t.x", (), {}, 3600, *head[5:], None, None, None, *tail, None
        ),
    ]
    for publish in refused:
        with pytest.raises(CountdownTooLongError, match=r"tasks\.max_countdown_s"):
            publish()
    soon = {"task": "t.soon", "options": {"countdown": 60}}
    message = amqp.as_task_v2(*head, None, [soon], None, *tail, [soon])
    assert message.headers["task"] == "t.x"
    assert amqp.as_task_v2("id", "t.x", countdown=60).headers["eta"] is not None
