"""The deployment report of ``kit health``: workers seen, queue depths, oldest-message ages."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from celery_kit.coordination.client import redis_url
from celery_kit.coordination.keys import keys_of
from celery_kit.exceptions import ConfigError
from celery_kit.observability.depth import DepthReader
from celery_kit.observability.heartbeat import heartbeat_redis
from celery_kit.state import settings_of

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.config.settings import Settings

__all__ = ["deployment_report", "read_worker_keys", "report_problems"]


def deployment_report(app: Celery, *, timeout_s: float = 2.0) -> dict[str, Any]:
    """Workers seen, queue depths and oldest-message ages for ``app``'s deployment.

    Workers come from their Redis heartbeat keys (``health.redis_key``) when the kit has
    a Redis, else from a broadcast ping. Oldest-message age needs Redis.
    """
    settings = settings_of(app)
    report: dict[str, Any] = {"broker_ok": True, "error": None, "workers": {}, "queues": {}}
    queues = list(settings.metrics.queues or app.amqp.queues)
    reader = DepthReader(app, timeout_s=timeout_s)
    try:
        for name, depth in reader.read(queues, oldest=True).items():
            report["queues"][name] = {
                "messages": depth.messages,
                "oldest_age_s": depth.oldest_age_s,
                "consumers": depth.consumers,
            }
    except Exception as exc:
        report["broker_ok"], report["error"] = False, f"broker unreachable: {exc!r}"
    finally:
        reader.close()
    report["workers"], report["workers_source"] = _workers_seen(app, timeout_s)
    return report


def _workers_seen(app: Celery, timeout_s: float) -> tuple[dict[str, Any], str]:
    settings = settings_of(app)
    if settings.health.redis_key:
        try:
            return read_worker_keys(settings, timeout_s=timeout_s), "redis"
        except ConfigError:
            pass  # no Redis: ask the workers
        except Exception as exc:
            return {"<error>": {"error": repr(exc)}}, "redis"
    replies = app.control.ping(timeout=timeout_s) or []
    seen: dict[str, Any] = {}
    for reply in replies:
        seen.update({name: {"ping": answer} for name, answer in reply.items()})
    return seen, "ping"


def report_problems(
    report: dict[str, Any], *, min_workers: int = 1, max_oldest_age_s: float | None = None
) -> list[str]:
    """What is wrong in a :func:`deployment_report` (empty: healthy)."""
    problems = []
    if not report["broker_ok"]:
        problems.append(str(report["error"]))
    workers = {k: v for k, v in report["workers"].items() if k != "<error>"}
    if len(workers) < min_workers:
        problems.append(f"{len(workers)} worker(s) seen, expected at least {min_workers}")
    if "<error>" in report["workers"]:
        problems.append(f"workers unknown: {report['workers']['<error>']['error']}")
    if max_oldest_age_s is not None:
        for name, q in report["queues"].items():
            age = q.get("oldest_age_s")
            if age is not None and age > max_oldest_age_s:
                problems.append(f"queue {name}: oldest message waits {age:.0f} s")
    return problems


def read_worker_keys(settings: Settings, *, timeout_s: float) -> dict[str, Any]:
    """The heartbeats workers keep in the kit's Redis, by hostname.

    Raises:
        ConfigError: the kit has no Redis (``redis.url``, or a Redis broker/backend).
    """
    client = heartbeat_redis(redis_url(settings), timeout_s)
    try:
        keys = list(client.scan_iter(match=keys_of(settings).worker_heartbeats(), count=500))
        values = client.mget(keys) if keys else []
    finally:
        client.close()
    seen = {}
    for raw in values:
        if raw:
            beat = json.loads(raw)
            seen[str(beat.get("hostname"))] = beat
    return seen
