"""make_app / settings_of: plain Celery apps that keep their own settings."""

from __future__ import annotations

import subprocess
import sys

import pytest
from celery import Celery

from celery_kit import ConfigError, CountdownTooLongError, Settings, make_app, settings_of
from celery_kit.tasks.checks import check_tasks

# a port nothing listens on: publishing must fail *before* any connection attempt
DEAD = "redis://127.0.0.1:1/0"


def app_with(**kwargs: object) -> Celery:
    return make_app("t", settings=Settings(_environ={}, broker_url=DEAD, **kwargs))


def test_make_app_returns_plain_celery_with_settings() -> None:
    app = app_with(tasks={"soft_time_limit_s": 5, "time_limit_s": 10})
    assert type(app) is Celery
    assert app.conf.task_time_limit == 10
    assert settings_of(app).tasks.soft_time_limit_s == 5


def test_two_apps_keep_their_own_settings() -> None:
    a = app_with(tasks={"soft_time_limit_s": 5, "time_limit_s": 10}, timezone="Europe/Paris")
    b = app_with(
        tasks={"soft_time_limit_s": 50, "time_limit_s": 100}, broker={"transport": "kombu"}
    )
    assert (a.conf.task_time_limit, b.conf.task_time_limit) == (10, 100)
    assert (a.conf.timezone, b.conf.timezone) == ("Europe/Paris", "UTC")
    assert settings_of(a) is not settings_of(b)
    assert settings_of(a).tasks.time_limit_s == 10
    assert a.conf.visibility_timeout != b.conf.visibility_timeout


def test_settings_of_a_plain_app_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="make_app"):
        settings_of(Celery("plain", set_as_current=False))


def test_settings_and_overrides_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="either settings="):
        make_app("t", settings=Settings(_environ={}), timezone="UTC")


def test_countdown_above_budget_is_refused_at_publish() -> None:
    # the worker holds delayed messages (kombu's transport): tasks.max_countdown_s guards
    app = app_with(tasks={"max_countdown_s": 60}, broker={"transport": "kombu"})

    @app.task(name="t.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(CountdownTooLongError, match=r"tasks.max_countdown_s \(60 s\)"):
        add.apply_async((1, 2), countdown=61)
    with pytest.raises(CountdownTooLongError):
        app.send_task("t.other", countdown=3600)


def test_eta_above_budget_is_refused_at_publish() -> None:
    from datetime import datetime, timedelta, timezone

    app = app_with(tasks={"max_countdown_s": 60}, delays={"enabled": False})
    with pytest.raises(CountdownTooLongError, match=r"t\.any"):
        app.send_task("t.any", eta=datetime.now(timezone.utc) + timedelta(hours=2))


def test_check_delay_boundaries() -> None:
    from datetime import datetime, timedelta, timezone

    from celery_kit.topology.publish import check_delay

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    check_delay("t", countdown=60, eta=None, max_countdown_s=60)  # equal is fine
    check_delay("t", countdown=None, eta=now + timedelta(seconds=60), max_countdown_s=60, now=now)
    check_delay(
        "t", countdown=None, eta=(now - timedelta(days=1)).isoformat(), max_countdown_s=60, now=now
    )  # past ETA runs at once
    with pytest.raises(CountdownTooLongError):
        check_delay(
            "t",
            countdown=None,
            eta=(now + timedelta(seconds=61)).isoformat(),
            max_countdown_s=60,
            now=now,
        )


def test_task_time_limit_above_budget_refused_when_app_finalizes() -> None:
    app = app_with(broker={"transport": "kombu"})

    @app.task(name="t.slow", time_limit=5000, soft_time_limit=4000, shared=False)
    def slow() -> None: ...

    with pytest.raises(ConfigError, match=r'tasks.limits."t.slow".time_limit_s'):
        check_tasks(app)


def test_task_soft_limit_above_hard_refused_when_app_finalizes() -> None:
    app = app_with()

    @app.task(name="t.bad", time_limit=50, soft_time_limit=60, shared=False)
    def bad() -> None: ...

    with pytest.raises(ConfigError, match="soft_time_limit=60 must be below"):
        check_tasks(app)


def test_task_limit_declared_in_config_is_accepted() -> None:
    app = app_with(
        tasks={"limits": {"t.slow": {"soft_time_limit_s": 4000, "time_limit_s": 5000}}},
        broker={"transport": "kombu"},
    )

    @app.task(name="t.slow", time_limit=5000, soft_time_limit=4000, shared=False)
    def slow() -> None: ...

    check_tasks(app)
    assert app.conf.visibility_timeout == 5000 + 600 + 300


def test_importing_the_package_and_cli_is_cheap() -> None:
    code = (
        "import sys, celery_kit, celery_kit.cli;"
        "heavy = [m for m in ('celery', 'redis', 'pydantic', 'prometheus_client')"
        " if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
