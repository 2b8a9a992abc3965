"""Docker Compose: the broker (Redis with AOF and noeviction, or RabbitMQ), a service per
worker profile, the exporter, beat (when it has a schedule), Flower (credentials from the
env file) and a web placeholder.
"""

from __future__ import annotations

import math
from typing import Any

from celery_kit.render import beat_deploy
from celery_kit.render.model import CONTAINER_METRICS_DIR, Context, dump_yaml

__all__ = ["compose_file", "render_compose"]

#: Redis as a broker must never drop keys (a dropped list is a lost queue) and should
#: survive a restart with its queues: append-only file, fsync every second.
REDIS_COMMAND = [
    "redis-server",
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--maxmemory-policy",
    "noeviction",
]


def _healthcheck(argv: list[str], interval_s: int) -> dict[str, Any]:
    return {
        "test": ["CMD", *argv],
        "interval": f"{interval_s}s",
        "timeout": "5s",
        "retries": 3,
        "start_period": "300s",  # importing the app before the first heartbeat
    }


def _service(ctx: Context, command: list[str], **extra: Any) -> dict[str, Any]:
    service: dict[str, Any] = {
        "image": ctx.settings.deploy.image,
        "command": command,
        "env_file": [ctx.settings.deploy.env_file],
        "restart": "unless-stopped",
    }
    broker = _broker_name(ctx)
    if broker is not None:
        service["depends_on"] = {broker: {"condition": "service_healthy"}}
    service.update(extra)
    return service


def _broker_name(ctx: Context) -> str | None:
    if ctx.settings.is_redis_broker:
        return "redis"
    return "rabbitmq" if ctx.settings.is_amqp_broker else None


def _broker(ctx: Context) -> dict[str, Any]:
    if ctx.settings.is_amqp_broker:
        # the server's consumer_timeout (30 min by default) must match
        # broker.consumer_timeout_s: set it in rabbitmq.conf if you changed either
        return {
            "rabbitmq": {
                "image": "rabbitmq:4",
                "volumes": ["rabbitmq-data:/var/lib/rabbitmq"],
                "healthcheck": {
                    "test": ["CMD", "rabbitmq-diagnostics", "-q", "ping"],
                    "interval": "10s",
                    "timeout": "10s",
                    "retries": 5,
                },
                "restart": "unless-stopped",
            }
        }
    if ctx.settings.is_redis_broker:
        return {
            "redis": {
                "image": "redis:7",
                "command": REDIS_COMMAND,
                "volumes": ["redis-data:/data"],
                "healthcheck": {
                    "test": ["CMD", "redis-cli", "ping"],
                    "interval": "5s",
                    "timeout": "3s",
                    "retries": 5,
                },
                "restart": "unless-stopped",
            }
        }
    return {}


def compose_file(ctx: Context) -> dict[str, Any]:
    """The Compose document."""
    services: dict[str, Any] = dict(_broker(ctx))
    health = ctx.settings.health
    for profile in ctx.profiles:
        extra: dict[str, Any] = {
            "environment": ctx.worker_env(profile),
            # `docker stop` signals PID 1 only (the worker's main process), then SIGKILL
            "stop_signal": "SIGTERM",
            "stop_grace_period": f"{ctx.grace_period_s(profile)}s",
        }
        if ctx.settings.metrics.enabled:  # the multiprocess directory, empty at each start
            extra["tmpfs"] = [CONTAINER_METRICS_DIR]
        if health.enabled:
            period = max(10, math.ceil(health.interval_s))
            extra["healthcheck"] = _healthcheck(ctx.probe_argv("liveness"), period)
        services[ctx.worker_name(profile)] = _service(ctx, ctx.worker_argv(profile), **extra)
    if ctx.settings.metrics.enabled:
        ctx.require_metrics("compose")
        port = ctx.settings.metrics.port
        services[ctx.object_name("exporter")] = _service(
            ctx, ctx.exporter_argv(), ports=[f"127.0.0.1:{port}:{port}"]
        )
    if beat_deploy.beat_rendered(ctx):  # one replica; the leader lease makes extra ones safe
        services[ctx.object_name("beat")] = _service(
            ctx,
            beat_deploy.beat_argv(ctx),
            environment=beat_deploy.beat_env(ctx),
            stop_signal="SIGTERM",  # releases the lease: another replica leads at once
            healthcheck=_healthcheck(beat_deploy.beat_probe_argv(ctx), 30),
        )
    flower = ctx.flower_argv()
    if flower is not None:
        port = ctx.settings.flower.port
        # FLOWER_BASIC_AUTH comes from the env file; `kit flower` refuses to start without it
        services[ctx.object_name("flower")] = _service(
            ctx, flower, ports=[f"127.0.0.1:{port}:{port}"]
        )
    services["web"] = _service(
        ctx,
        ["sh", "-c", "echo 'replace this service with your web app (same image and env file)'"],
        restart="no",
    )
    document: dict[str, Any] = {"name": ctx.settings.deploy.name, "services": services}
    if (broker := _broker_name(ctx)) is not None:
        document["volumes"] = {f"{broker}-data": {}}
    return document


def render_compose(ctx: Context) -> dict[str, str]:
    """``compose/compose.yaml``."""
    return {"compose/compose.yaml": dump_yaml([compose_file(ctx)], header=ctx.header("compose"))}
