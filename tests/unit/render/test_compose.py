"""Compose file: Redis safe as a broker, workers with healthchecks and grace periods."""

from __future__ import annotations

from typing import Any

import yaml

from celery_kit.render import render
from celery_kit.topology.workers import worker_argv
from tests.integration.support.render import production

#: Top-level and service keys the Compose specification defines (the subset we use).
#: No PyPI package ships the specification's JSON schema, so keys are checked by name.
_TOP = {"name", "services", "volumes", "networks", "configs", "secrets"}
_SERVICE = {
    "image", "command", "env_file", "environment", "restart", "depends_on", "ports",
    "volumes", "healthcheck", "stop_signal", "stop_grace_period", "tmpfs",
}  # fmt: skip


def compose(**overrides: Any) -> dict[str, Any]:
    text = render("compose", production(**overrides), app="proj")["compose/compose.yaml"]
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def test_keys_are_compose_spec_keys() -> None:
    doc = compose()
    assert set(doc) <= _TOP
    for name, service in doc["services"].items():
        assert set(service) <= _SERVICE, name
        assert "image" in service


def test_redis_keeps_its_queues() -> None:
    command = compose()["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_workers_exporter_flower_and_web() -> None:
    settings = production()
    services = compose()["services"]
    for name, profile in settings.workers.items():
        service = services[f"celery-worker-{name}"]
        assert service["command"] == worker_argv(name, profile=profile, app="proj")
        assert service["healthcheck"]["test"] == [
            "CMD", "python", "-m", "celery_kit.health", "--liveness"
        ]  # fmt: skip
        assert service["environment"]["REMAP_SIGTERM"] == "SIGQUIT"
    assert services["celery-worker-bulk"]["stop_grace_period"] == "75s"
    assert services["celery-exporter"]["command"][-2:] == ["kit", "exporter"]
    assert services["celery-flower"]["env_file"] == ["/etc/celery-kit/celery.env"]
    assert "web" in services


def test_amqp_broker_gets_no_redis_service() -> None:
    amqp = "amqp://guest:guest@rabbitmq:5672//"
    services = compose(broker_url=amqp, broker={"consumer_timeout_s": 7200})["services"]
    assert "redis" not in services
    assert all("depends_on" not in s for s in services.values())
