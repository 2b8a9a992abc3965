"""Bad [deploy] input and unrenderable settings: refused, with what to change."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from celery_kit.cli import kit
from celery_kit.exceptions import ConfigError, RenderError
from celery_kit.render import TARGETS, render
from tests.integration.support.render import production


@pytest.mark.parametrize(
    ("deploy", "message"),
    [
        ({"imag": "x"}, "imag"),
        ({"labels": {"bad label": "x"}}, "is not a Kubernetes label"),
        ({"namespace": "Prod_NS"}, "is not a Kubernetes name"),
        ({"min_replicas": 5, "max_replicas": 2}, "min_replicas (5) exceeds max_replicas (2)"),
        ({"profiles": {"bulk": {"min_replicas": 30}}}, "deploy.profiles.bulk: min_replicas"),
        ({"resources": {"requests": {"cpu": "lots"}}}, "is not a Kubernetes quantity"),
        ({"shutdown": "later"}, "requeue"),
        ({"alerts": {"failure_ratio": 2}}, "failure_ratio"),
    ],
)
def test_bad_deploy_settings_are_refused(deploy: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        production(deploy=deploy)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "target", "message"),
    [
        ({"workers": {"bulk": {"soft_shutdown_timeout_s": 900}}}, "k8s",
         "soft_shutdown_timeout_s (900) exceeds the longest hard time limit"),
        ({"workers": {"critical": {"concurrency": None}}}, "keda",
         "workers.critical: set concurrency (or autoscale)"),
        ({"metrics": {"enabled": False}}, "keda", "set [metrics] enabled = true"),
        ({"metrics": {"enabled": False}}, "alerts", "set [metrics] enabled = true"),
        ({"metrics": {"port": 0}}, "dashboard", "metrics.port = 0"),
        ({"deploy": {"profiles": {"nope": {"max_replicas": 3}}}}, "k8s",
         "deploy.profiles names unknown worker profile(s) nope"),
        ({"deploy": {"name": "a" * 60}}, "k8s", "shorten deploy.name"),
        ({"beat": {"enabled": True, "metrics_port": 0}}, "k8s", "beat.metrics_port = 0"),
        ({"beat": {"enabled": True, "metrics_port": 0}}, "systemd", "beat.metrics_port = 0"),
    ],
)  # fmt: skip
def test_unrenderable_settings_say_what_to_change(
    overrides: dict[str, Any], target: str, message: str
) -> None:
    with pytest.raises(RenderError) as err:
        render(target, production(**overrides), app="proj")
    assert message in str(err.value)


def test_no_profiles_is_refused() -> None:
    from celery_kit import Settings

    with pytest.raises(RenderError, match=r"declare \[workers.NAME\]"):
        render("k8s", Settings(_environ={}, metrics={"enabled": True}), app="proj")


def test_unknown_target() -> None:
    with pytest.raises(RenderError, match="choose one of k8s, keda"):
        render("helm", production(), app="proj")
    assert "all" not in TARGETS


def test_cli_reports_a_render_error_without_traceback() -> None:
    from celery_kit import make_app

    app = make_app("kit_render_cli", settings=production(metrics={"enabled": False}))
    try:
        result = CliRunner().invoke(kit, ["render", "keda"], obj={"app": app})
    finally:
        app.close()
    assert result.exit_code == 1
    assert "set [metrics] enabled = true" in result.output
    assert "Traceback" not in result.output
