"""The task-context log filter and JSON lines, called directly."""

from __future__ import annotations

import io
import json
import logging

import pytest
from celery import signals

from celery_kit import ConfigError, Settings, make_app
from celery_kit.observability.tasklog import TaskContextFilter, install_task_logging, json_formatter

DEAD = "redis://127.0.0.1:1/0"


def capture(formatter: logging.Formatter | None = None) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(TaskContextFilter())
    if formatter is not None:
        handler.setFormatter(formatter)
    logger = logging.getLogger(f"celery_kit.test.{id(out)}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    return logger, out


def test_records_outside_a_task_pass_unchanged() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert TaskContextFilter().filter(record) is True
    assert not hasattr(record, "task_id")


def test_records_inside_a_task_carry_it_as_json() -> None:
    pytest.importorskip("pythonjsonlogger", reason="needs celery_kit[json-logs]")
    app = make_app("t", settings=Settings(_environ={}, broker_url=DEAD))
    logger, out = capture(json_formatter())

    @app.task(name="proj.work")
    def work() -> None:
        logger.info("inside")

    work.apply(task_id="abc-1")  # runs here: the filter reads Celery's current task
    logger.info("outside")
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside["message"] == "inside"
    assert (inside["task_id"], inside["task_name"], inside["retries"]) == ("abc-1", "proj.work", 0)
    assert inside["level"] == "INFO"
    assert "task_id" not in outside


def test_installed_on_the_worker_handlers_by_celery_logging_signals() -> None:
    pytest.importorskip("pythonjsonlogger", reason="needs celery_kit[json-logs]")
    from pythonjsonlogger.json import JsonFormatter

    app = make_app("t", settings=Settings(_environ={}, broker_url=DEAD, logging={"format": "json"}))
    assert app is not None
    logger = logging.getLogger("celery_kit.test.worker-root")
    logger.handlers = [logging.StreamHandler(io.StringIO())]
    signals.after_setup_logger.send(sender=None, logger=logger, loglevel=20, logfile=None)
    [handler] = logger.handlers
    assert isinstance(handler.formatter, JsonFormatter)
    assert any(isinstance(f, TaskContextFilter) for f in handler.filters)


def test_opt_out_installs_nothing() -> None:
    settings = Settings(_environ={}, broker_url=DEAD, logging={"task_context": False})
    before = len(signals.after_setup_logger.receivers)
    install_task_logging(make_app("t", settings=settings), settings)
    assert len(signals.after_setup_logger.receivers) == before


def test_unknown_format_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"logging\.format") as info:
        Settings(_environ={}, broker_url=DEAD, logging={"format": "xml"})
    assert "json" in str(info.value)
