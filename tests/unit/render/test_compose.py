"""Compose file: Redis safe as a broker, workers with healthchecks and grace periods."""

from __future__ import annotations

from typing import Any

import compose_spec
import pytest
import yaml

from celery_kit.render import render
from celery_kit.topology.workers import worker_argv
from tests.integration.support.render import production

#: Top-level and service keys the Compose specification defines (the subset we use).
_TOP = {"name", "services", "volumes", "networks", "configs", "secrets"}
_SERVICE = {
    "image", "command", "env_file", "environment", "restart", "depends_on", "ports",
    "volumes", "healthcheck", "stop_signal", "stop_grace_period", "tmpfs",
}  # fmt: skip


def compose(**overrides: Any) -> dict[str, Any]:
    text = render("compose", production(**overrides), app="proj")["compose/compose.yaml"]
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def test_compose_spec_parser_accepts_the_file() -> None:
    # compose-spec's parser (models generated from the specification's schema.json)
    # refuses unknown keys and wrongly typed values
    text = render("compose", production(), app="proj")["compose/compose.yaml"]
    parsed = compose_spec.PyCompose.from_yaml(text)
    parsed.validate()
    assert parsed.service_names()[0] == "redis"


def test_compose_spec_parser_refuses_a_broken_file() -> None:
    # the check above can fail: a misspelled key or a wrong type is refused
    text = render("compose", production(), app="proj")["compose/compose.yaml"]
    for broken in (
        text.replace("stop_grace_period: 15s", "stop_grace_period: [15]", 1),
        text.replace("    restart: unless-stopped", "    restartt: unless-stopped", 1),
    ):
        assert broken != text
        with pytest.raises(ValueError, match=r"stop_grace_period|restartt"):
            compose_spec.PyCompose.from_yaml(broken).validate()


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


def test_amqp_broker_gets_rabbitmq_instead_of_redis() -> None:
    amqp = "amqp://guest:guest@rabbitmq:5672//"
    doc = compose(broker_url=amqp, broker={"consumer_timeout_s": 7200})
    services = doc["services"]
    assert "redis" not in services
    assert services["rabbitmq"]["healthcheck"]["test"][1] == "rabbitmq-diagnostics"
    workers = [s for name, s in services.items() if name.startswith("celery-worker-")]
    assert all(s["depends_on"] == {"rabbitmq": {"condition": "service_healthy"}} for s in workers)
    assert doc["volumes"] == {"rabbitmq-data": {}}
