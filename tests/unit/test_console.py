"""Kit errors outside the command line propagate unchanged; inside, one block and exit 2."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from celery_kit import ConfigError, make_app
from celery_kit.console import EXIT_CONFIG, error_block, refusals, show_traceback


def test_outside_the_command_line_the_error_propagates() -> None:
    with pytest.raises(ConfigError, match="time_limit_s"):
        make_app("c", tasks={"time_limit_s": "abc"})


def test_under_a_celery_command_it_is_one_block_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CELERY_KIT_DEBUG", raising=False)

    @click.command(name="celery")
    def celery() -> None:
        with refusals():
            raise ConfigError("broker_url: fix it")

    result = CliRunner().invoke(celery, [])
    assert result.exit_code == EXIT_CONFIG
    assert result.exception is not None
    assert not isinstance(result.exception, ConfigError)


def test_debug_switches() -> None:
    assert show_traceback(["worker", "--traceback"], {})
    assert show_traceback([], {"CELERY_KIT_DEBUG": "1"})
    assert not show_traceback(["worker"], {"CELERY_KIT_DEBUG": "0"})


def test_block_names_the_error_and_how_to_see_more() -> None:
    block = error_block(ConfigError("invalid settings:\n  - `x` (from env X): wrong"))
    assert block.splitlines()[0].startswith("celery_kit: configuration error (ConfigError)")
    assert "  invalid settings:" in block
    assert "CELERY_KIT_DEBUG=1" in block
