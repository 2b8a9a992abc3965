"""Flask integration without a broker: config sources, checks, the app-context task class."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, _state

from celery_kit import ConfigError, RetryingTask, settings_of

flask = pytest.importorskip("flask")

from celery_kit.integrations.flask import (  # noqa: E402
    AppContextTask,
    app_context_task,
    celery_init_app,
)

DEAD = "redis://127.0.0.1:1/0"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("CELERY_KIT_", "CELERY_BROKER", "CELERY_RESULT", "FLASK_")):
            monkeypatch.delenv(name)
    previous = _state.default_app
    yield
    _state.default_app = previous  # celery_init_app(set_default=True) changes it


def flask_app(**config: Any) -> flask.Flask:
    app = flask.Flask("flaskt")
    app.config.from_mapping({"CELERY": {"broker_url": DEAD}, **config})
    return app


def test_extension_holds_the_celery_app_named_after_flask() -> None:
    web = flask_app()
    celery_app = celery_init_app(web)
    assert web.extensions["celery"] is celery_app
    assert type(celery_app) is Celery
    assert celery_app.main == "flaskt"
    assert _state.default_app is celery_app
    assert celery_init_app(flask_app(), set_default=False) is not _state.default_app


def test_celery_dict_beats_kit_default_and_names_its_origin() -> None:
    celery_app = celery_init_app(flask_app(CELERY={"broker_url": DEAD, "result_expires": 60}))
    assert celery_app.conf.result_expires == 60
    assert celery_app.conf.task_acks_late is True  # kit default underneath
    origin = settings_of(celery_app).origin_of("celery_overrides.result_expires")
    assert str(origin) == "flask config CELERY['result_expires']"


def test_prefixed_env_fills_the_celery_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_CELERY__broker_url", "redis://127.0.0.1:2/5")
    monkeypatch.setenv("FLASK_CELERY__worker_prefetch_multiplier", "3")  # JSON: an int
    web = flask.Flask("flaskt")
    web.config.from_prefixed_env()
    celery_app = celery_init_app(web)
    assert celery_app.conf.broker_url == "redis://127.0.0.1:2/5"
    assert celery_app.conf.worker_prefetch_multiplier == 3


def test_unsafe_celery_value_is_refused_naming_the_flask_key() -> None:
    web = flask_app(CELERY={"broker_url": DEAD, "task_serializer": "pickle"})
    with pytest.raises(ConfigError, match=r"pickle.*flask config CELERY\['task_serializer'\]"):
        celery_init_app(web)


def test_misspelled_celery_key_is_refused() -> None:
    web = flask_app(CELERY={"broker_url": DEAD, "task_serialiser": "json"})
    with pytest.raises(ConfigError, match="did you mean `task_serializer`"):
        celery_init_app(web)


def test_kit_dict_and_keyword_overrides() -> None:
    kit = {"tasks": {"soft_time_limit_s": 20, "time_limit_s": 30}}
    assert celery_init_app(flask_app(CELERY_KIT=kit)).conf.task_time_limit == 30
    celery_app = celery_init_app(flask_app(CELERY_KIT=kit), tasks={"time_limit_s": 45})
    assert celery_app.conf.task_time_limit == 45


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"CELERY": ["broker_url"]}, "must be a dict of lowercase Celery settings"),
        ({"CELERY_KIT": "tasks"}, "CELERY_KIT must be a dict"),
        (
            {"CELERY_KIT": {"result_backend": DEAD}, "CELERY": {"result_backend": "rpc://"}},
            "keep only one",
        ),
    ],
)
def test_malformed_config_is_refused(config: dict[str, Any], message: str) -> None:
    web = flask.Flask("flaskt")
    web.config.from_mapping(config)
    with pytest.raises(ConfigError, match=message):
        celery_init_app(web)


def test_tasks_run_inside_the_app_context() -> None:
    web = flask_app(GREETING="hello")
    celery_app = celery_init_app(web)

    @celery_app.task(name="flaskt.greet", shared=False)
    def greet() -> str:
        return str(flask.current_app.config["GREETING"])

    assert not flask.has_app_context()
    # apply() runs the task body locally through the task class's __call__, no broker
    assert greet.apply().get() == "hello"
    assert isinstance(greet, AppContextTask)


def test_app_context_task_keeps_another_kit_base() -> None:
    web = flask_app()
    retrying = app_context_task(web, base=RetryingTask)
    assert issubclass(retrying, AppContextTask)
    assert issubclass(retrying, RetryingTask)
    assert retrying.dead_letter is True
    assert retrying._flask_app is web  # type: ignore[attr-defined]


def test_importing_the_kit_imports_no_framework() -> None:
    code = (
        "import sys, celery_kit, celery_kit.cli, celery_kit.integrations\n"
        "print(sorted(m for m in ('django', 'flask') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
