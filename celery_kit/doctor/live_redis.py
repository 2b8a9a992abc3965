"""``doctor --live`` on Redis: eviction policy, persistence, version (read-only, bounded)."""

from __future__ import annotations

from typing import Any

from celery_kit.config.rules.model import Evidence, Finding
from celery_kit.doctor.live_rules import (
    BROKER_UNREACHABLE,
    REDIS_CONFIG_HIDDEN,
    REDIS_EVICTION,
    REDIS_PERSISTENCE,
    REDIS_VERSION,
)

__all__ = ["check_redis"]

_ORIGIN = "live: Redis server"


def check_redis(url: str, *, timeout_s: float) -> list[Finding]:
    """Findings about the Redis at ``url``; issues only INFO and CONFIG GET."""
    import redis

    client = redis.Redis.from_url(
        url.split(";")[0],
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry_on_timeout=False,
    )
    try:
        return _check(client)
    except redis.RedisError as exc:
        return [BROKER_UNREACHABLE.finding(f"Redis: {type(exc).__name__}: {exc}")]
    finally:
        client.close()


def _config(client: Any) -> tuple[dict[str, str], list[Finding]]:
    """CONFIG GET of the three settings, or what INFO shows when CONFIG is refused."""
    import redis

    try:
        values: dict[str, str] = {}
        for name in ("maxmemory-policy", "appendonly", "save"):
            values.update({str(k): str(v) for k, v in client.config_get(name).items()})
        return values, []
    except redis.ResponseError as exc:
        note = REDIS_CONFIG_HIDDEN.finding(
            f"CONFIG GET refused ({exc}); read INFO instead (RDB save points unknown)"
        )
    memory: dict[str, Any] = client.info("memory")
    persistence: dict[str, Any] = client.info("persistence")
    values = {"maxmemory-policy": str(memory.get("maxmemory_policy", "unknown"))}
    values["appendonly"] = "yes" if int(persistence.get("aof_enabled", 0)) else "no"
    values["save"] = "unknown"  # INFO does not show the save points
    return values, [note]


def _check(client: Any) -> list[Finding]:
    server: dict[str, Any] = client.info("server")
    version = str(server.get("redis_version", "unknown"))
    findings = [
        REDIS_VERSION.finding(
            f"Redis {version}", [Evidence("redis_version", version, "live: INFO server")]
        )
    ]
    values, notes = _config(client)
    findings += notes
    policy = values.get("maxmemory-policy", "unknown")
    if policy not in ("noeviction", "unknown"):
        findings.append(
            REDIS_EVICTION.finding(
                f"maxmemory-policy = {policy}: under memory pressure Redis deletes queued and"
                " unacknowledged tasks",
                [Evidence("maxmemory-policy", policy, _ORIGIN)],
            )
        )
    aof, save = values.get("appendonly", "no"), values.get("save", "")
    if aof == "no" and not save.strip():
        findings.append(
            REDIS_PERSISTENCE.finding(
                "appendonly = no and no RDB save points: a Redis restart loses every queued task",
                [Evidence("appendonly", aof, _ORIGIN), Evidence("save", save, _ORIGIN)],
            )
        )
    return findings
