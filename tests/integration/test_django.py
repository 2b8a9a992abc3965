"""Django: ``delay_on_commit`` from a real view, a real worker, the example project's settings.

The web side runs in its own process (Django configures itself once per process); the view
is driven through Django's test client, the worker is a real ``celery -A proj worker``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
import redis

EXAMPLE = Path(__file__).parents[2] / "examples" / "django_proj"
APPS = Path(__file__).parent / "apps"
pytestmark = pytest.mark.timeout(180)

#: Drives the example's view like a browser would; prints [[status, json], ...].
POST_ORDERS = """
import json, sys, django
django.setup()
from django.test import Client
client = Client()
print(json.dumps([[r.status_code, r.json()] for r in
      (client.post("/orders/", data) for data in json.loads(sys.argv[1]))]))
"""


def django_env(broker_url: str, db_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "proj.settings",
        "DJANGO_DB_PATH": str(db_path),
        "CELERY_BROKER_URL": broker_url,
        **extra,
    }


def run(argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run in the example project with only our CELERY_*/DJANGO_* variables."""
    child = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY", "DJANGO"))}
    child.update(env)
    child["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE), str(APPS)])
    return subprocess.run(
        [sys.executable, *argv], cwd=EXAMPLE, env=child, capture_output=True, text=True, timeout=90
    )


def post_orders(env: Mapping[str, str], *forms: dict[str, str]) -> list[list[object]]:
    done = run(["-c", POST_ORDERS, json.dumps(forms)], env)
    assert done.returncode == 0, done.stderr
    result: list[list[object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def queued_messages(r: redis.Redis, queue: str = "default") -> list[dict[str, object]]:
    """Messages waiting in ``queue`` on Redis, across its priority sub-lists."""
    names = [queue, *(f"{queue}:{step}" for step in range(1, 10))]
    return [json.loads(raw) for name in names for raw in r.lrange(name, 0, -1)]


def order_status(db_path: Path, order_id: int) -> str | None:
    with sqlite3.connect(db_path) as db:
        row = db.execute("SELECT status FROM orders_order WHERE id = ?", (order_id,)).fetchone()
    return None if row is None else str(row[0])


def test_delay_on_commit_sends_only_after_commit_and_worker_runs_it(
    kit_redis_url: str, kit_worker, tmp_path: Path
) -> None:
    env = django_env(kit_redis_url, tmp_path / "db.sqlite3")
    assert run(["manage.py", "migrate", "-v", "0"], env).returncode == 0
    r = redis.Redis.from_url(kit_redis_url)

    # Given no worker yet, when the view's transaction rolls back after delay_on_commit
    [[status, body]] = post_orders(env, {"item": "lamp", "simulate_declined": "1"})
    # Then neither the order nor the task exists
    assert (status, body) == (409, {"rolled_back": True})
    assert queued_messages(r) == []
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM orders_order").fetchone() == (0,)

    # When the view's transaction commits
    [[status, body]] = post_orders(env, {"item": "book"})
    assert status == 201
    assert isinstance(body, dict)
    order_id = int(body["order_id"])
    # Then exactly that task was sent, once
    [message] = queued_messages(r)
    assert isinstance(message["headers"], dict)
    assert message["headers"]["task"] == "orders.process_order"
    assert message["headers"]["argsrepr"] == f"({order_id},)"
    assert order_status(tmp_path / "db.sqlite3", order_id) == "new"

    # And a real worker (tasks found by autodiscover_tasks) runs it
    worker = kit_worker("proj", env=env, concurrency=1, pythonpath=[EXAMPLE], cwd=EXAMPLE)
    deadline = time.monotonic() + 60
    while order_status(tmp_path / "db.sqlite3", order_id) != "processed":
        assert time.monotonic() < deadline, worker.log_text()[-3000:]
        time.sleep(0.2)
    assert "orders.process_order" in worker.log_text()
    assert queued_messages(r) == []


def test_celery_django_settings_beat_kit_defaults_in_the_effective_config(
    kit_redis_url: str, tmp_path: Path
) -> None:
    env = django_env(kit_redis_url, tmp_path / "db.sqlite3")
    done = run(["-m", "celery", "-A", "proj", "kit", "config", "--json"], env)
    assert done.returncode == 0, done.stderr
    conf = json.loads(done.stdout)
    # CELERY_RESULT_EXPIRES = 3600 in proj/settings.py; the kit's default is a day
    assert conf["result_expires"] == {
        "value": 3600,
        "origin": "override django setting CELERY_RESULT_EXPIRES",
    }
    assert conf["task_time_limit"]["origin"] == "django setting CELERY_KIT"
    assert conf["timezone"]["origin"] == "django setting TIME_ZONE"
    assert conf["task_acks_late"] == {"value": True, "origin": "kit default"}


def test_unsafe_django_setting_is_refused_before_anything_runs(
    kit_redis_url: str, tmp_path: Path
) -> None:
    # django_unsafe_settings.py: the example's settings plus CELERY_TASK_SERIALIZER="pickle"
    env = django_env(
        kit_redis_url, tmp_path / "db.sqlite3", DJANGO_SETTINGS_MODULE="django_unsafe_settings"
    )
    done = run(["-c", "import proj"], env)
    assert done.returncode != 0
    assert "ConfigError" in done.stderr
    assert "django setting CELERY_TASK_SERIALIZER" in done.stderr
    assert "pickle" in done.stderr
