"""The kit command group without a broker: help, defaults, config with masking."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

from click.testing import CliRunner

from celery_kit import Settings, make_app
from celery_kit.cli import kit, main, mask


def test_celery_kit_help_works_without_an_app() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celery_kit.cli", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "config" in done.stdout


def test_config_needs_an_app() -> None:
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 2
    assert "needs an app" in result.output


def test_config_shows_values_origins_and_masks_secrets() -> None:
    settings = Settings(
        _environ={"CELERY_KIT_TASKS__TIME_LIMIT_S": "900"},
        broker_url="redis://:hunter2@127.0.0.1:6399/0",
        broker={"transport": "kombu"},
        celery_overrides={"worker_send_task_events": True},
    )
    app = make_app("t", settings=settings)
    result = CliRunner().invoke(kit, ["config"], obj=SimpleNamespace(app=app))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "hunter2" not in out
    assert "redis://:********@127.0.0.1:6399/0" in out
    assert "[env CELERY_KIT_TASKS__TIME_LIMIT_S]" in out
    assert "[override" in out
    line = next(li for li in out.splitlines() if li.startswith("visibility_timeout"))
    assert "1800" in line
    assert line.endswith("[derived]")
    assert "redelivery budget: 900 s hard limit" in out
    assert "broker transport: kombu" in out


def test_config_says_the_kit_transport_is_in_use_and_why_the_timeout_is_short() -> None:
    app = make_app("t", settings=Settings(_environ={}, broker_url="redis://127.0.0.1:6399/0"))
    result = CliRunner().invoke(kit, ["config"], obj=SimpleNamespace(app=app))
    assert result.exit_code == 0, result.output
    line = next(li for li in result.output.splitlines() if li.startswith("broker_transport "))
    assert "celery_kit.transport.redis:Transport" in line
    assert "broker transport: kit" in result.output
    assert "visibility timeout 60 s (4 x 15 s renewal interval" in result.output


def test_config_json() -> None:
    app = make_app("t", settings=Settings(_environ={}, broker_url="redis://127.0.0.1:6399/0"))
    result = CliRunner().invoke(kit, ["config", "--json"], obj=SimpleNamespace(app=app))
    data = json.loads(result.output)
    assert data["task_acks_late"] == {"value": True, "origin": "kit default"}


def test_config_via_app_option_loads_the_module(tmp_path, monkeypatch) -> None:
    (tmp_path / "cfgproj.py").write_text(
        "from celery_kit import make_app\n"
        "app = make_app('cfgproj', broker_url='redis://127.0.0.1:6399/0')\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(main, ["-A", "cfgproj:app", "config"])
    assert result.exit_code == 0, result.output
    assert "task_acks_late" in result.output


def test_config_on_a_plain_app_explains() -> None:
    from celery import Celery

    result = CliRunner().invoke(
        kit, ["config"], obj=SimpleNamespace(app=Celery("x", set_as_current=False))
    )
    assert result.exit_code == 1
    assert "make_app" in result.output


def test_mask_nested_secrets() -> None:
    masked = mask({"password": "p", "opts": {"sasl_token": "t", "n": 1}, "u": "amqp://a:b@h//"})
    assert masked == {
        "password": "********",
        "opts": {"sasl_token": "********", "n": 1},
        "u": "amqp://a:********@h//",
    }


def test_kit_is_a_celery_subcommand(tmp_path) -> None:
    """The `celery.commands` entry point: `celery -A proj kit config` with the real CLI."""
    (tmp_path / "epproj.py").write_text(
        "from celery_kit import make_app\n"
        "app = make_app('epproj', broker_url='redis://:pw@127.0.0.1:6399/0')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CELERY")}
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "epproj", "kit", "config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "task_reject_on_worker_lost" in done.stdout
    assert ":pw@" not in done.stdout


def test_out_of_range_port_is_a_click_error() -> None:
    result = CliRunner().invoke(main, ["-A", "whatever", "exporter", "--port", "99999"])
    assert result.exit_code == 2
    assert "Invalid value for '--port': 99999 is not in the range 0<=x<=65535" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def _one_line_error(app_name: str, tmp_path, monkeypatch) -> str:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(main, ["-A", app_name, "config"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    return result.output


def test_missing_app_module_is_one_line(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = _one_line_error("nosuch_kit_app", tmp_path, monkeypatch)
    assert "cannot import the app 'nosuch_kit_app' (-A): no module named 'nosuch_kit_app'" in out


def test_missing_dependency_of_the_app_is_one_line(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "kit_broken_app.py").write_text("import nosuch_dependency_xyz\n")
    out = _one_line_error("kit_broken_app", tmp_path, monkeypatch)
    assert "it imports 'nosuch_dependency_xyz', which is not installed" in out


def test_missing_app_attribute_is_one_line(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "kit_attr_app.py").write_text("x = 1\n")
    out = _one_line_error("kit_attr_app:nothere", tmp_path, monkeypatch)
    assert "module 'kit_attr_app' has no attribute 'nothere'" in out
