"""Every Celery key the kit emits is one Celery knows (Celery ignores typos silently)."""

from __future__ import annotations

import pytest
from celery.app.defaults import DEFAULTS

from celery_kit import Settings
from celery_kit.config.defaults import DOCUMENTED_EXTRA_KEYS, SAFE_DEFAULTS

FULL = {
    "tasks": {"limits": {"p.t": {"soft_time_limit_s": 5, "time_limit_s": 10}}},
    "worker": {"max_memory_per_child_kb": 200_000, "max_tasks_per_child": 5000},
    "result_backend": "redis://127.0.0.1:6399/1",
    "celery_overrides": {"worker_send_task_events": True},
}


@pytest.mark.parametrize(
    "broker", ["redis://127.0.0.1:6399/0", "amqp://guest:guest@127.0.0.1:5672//"]
)
def test_every_emitted_key_is_a_celery_setting(broker: str) -> None:
    conf = Settings(_environ={}, broker_url=broker, **FULL).celery_conf()
    unknown = sorted(set(conf) - set(DEFAULTS) - set(DOCUMENTED_EXTRA_KEYS))
    assert unknown == []


def test_documented_extras_are_really_missing_from_celery() -> None:
    # if Celery adds one of them, the exception list must shrink
    assert not set(DOCUMENTED_EXTRA_KEYS) & set(DEFAULTS)


def test_safe_defaults_table_matches_celery() -> None:
    for default in SAFE_DEFAULTS:
        assert default.key in DEFAULTS or default.key in DOCUMENTED_EXTRA_KEYS, default.key
        assert default.why.endswith("."), default.key


def test_readme_table_is_generated_from_defaults() -> None:
    from pathlib import Path

    from celery_kit.cli import defaults_table

    readme = (Path(__file__).parents[3] / "README.md").read_text()
    assert defaults_table() in readme, "run `celery-kit defaults --markdown` and paste it"


def test_children_are_recycled_by_memory_not_by_count_unless_asked() -> None:
    default = Settings(_environ={}, broker_url="redis://127.0.0.1:6399/0").celery_conf()
    assert default["worker_max_memory_per_child"] == 512_000
    assert "worker_max_tasks_per_child" not in default  # Celery's None: no fork every N tasks
    both = Settings(_environ={}, broker_url="redis://127.0.0.1:6399/0", **FULL).celery_conf()
    assert both["worker_max_tasks_per_child"] == 5000
    assert both["worker_max_memory_per_child"] == 200_000
