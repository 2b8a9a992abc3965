"""``doctor --live`` on RabbitMQ: queue arguments, idle queues, consumer_timeout (read-only).

Existence and depth come from passive declares. Arguments are compared the way a worker
will meet them: a queue the passive declare just showed to exist is declared again with
the app's arguments on a throwaway channel; RabbitMQ answers PRECONDITION_FAILED when they
differ and changes nothing when they match. (A queue deleted between the two declares
would be re-created; the window is one round trip.) The management API, when it answers,
is read for per-queue consumer timeouts only.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from celery_kit.config.celery_keys import CeleryKeys as K
from celery_kit.config.rules.facts import RABBITMQ_CONSUMER_TIMEOUT_S
from celery_kit.config.rules.model import Evidence, Finding
from celery_kit.doctor.live_rules import (
    AMQP_CONSUMER_TIMEOUT,
    AMQP_IDLE_QUEUE,
    AMQP_QUEUE_ARGUMENTS,
    BROKER_UNREACHABLE,
)

__all__ = ["AmqpReport", "check_amqp", "management_url"]

_ORIGIN = "live: RabbitMQ"


@dataclass(frozen=True)
class AmqpReport:
    """What the probe found, and the consumer_timeout it used (``None``: assumed default)."""

    findings: list[Finding]
    consumer_timeout_s: float | None
    notes: list[str]


def management_url(broker_url: str) -> str:
    """``http://user:pass@host:15672`` for the broker's host (the management default)."""
    parts = urllib.parse.urlsplit(broker_url.split(";")[0])
    auth = f"{parts.username or 'guest'}:{parts.password or 'guest'}@"
    return f"http://{auth}{parts.hostname or 'localhost'}:15672"


def _vhost(broker_url: str) -> str:
    path = urllib.parse.urlsplit(broker_url.split(";")[0]).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


def _api(base: str, path: str, timeout_s: float) -> Any:
    parts = urllib.parse.urlsplit(base)
    url = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}{path}"
    request = urllib.request.Request(url)
    token = f"{parts.username or ''}:{parts.password or ''}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def check_amqp(
    broker_url: str,
    queues: Iterable[Any],
    *,
    timeout_s: float,
    longest_late_ack_s: float | None,
    management: str | None = None,
) -> AmqpReport:
    """Findings about the declared ``queues`` (kombu ``Queue`` objects) on RabbitMQ."""
    from kombu import Connection

    notes: list[str] = []
    mgmt = management or management_url(broker_url)
    api_ok = True
    try:
        _api(mgmt, "/api/overview", timeout_s)
    except Exception as exc:
        api_ok = False
        notes.append(
            f"RabbitMQ management API not reachable ({type(exc).__name__}): consumer_timeout"
            f" assumed to be the default {RABBITMQ_CONSUMER_TIMEOUT_S:g} s"
        )
    findings: list[Finding] = []
    timeout: float | None = None
    try:
        with Connection(broker_url, connect_timeout=timeout_s) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=max(1, int(timeout_s)))
            for queue in queues:
                found, queue_timeout = _check_queue(
                    conn, queue, broker_url, mgmt, api_ok, timeout_s
                )
                findings += found
                if queue_timeout is not None:
                    timeout = min(timeout or queue_timeout, queue_timeout)
    except Exception as exc:
        return AmqpReport(
            [BROKER_UNREACHABLE.finding(f"RabbitMQ: {type(exc).__name__}: {exc}")], None, notes
        )
    effective = timeout if timeout is not None else RABBITMQ_CONSUMER_TIMEOUT_S
    if longest_late_ack_s is not None and longest_late_ack_s >= effective:
        origin = "live: queue argument/policy" if timeout is not None else "assumed default"
        findings.append(
            AMQP_CONSUMER_TIMEOUT.finding(
                f"a late-acked delivery may stay unacknowledged {longest_late_ack_s:g} s (hard"
                f" limit x prefetch) but consumer_timeout is {effective:g} s",
                [Evidence("consumer_timeout", effective, origin)],
            )
        )
    return AmqpReport(findings, timeout, notes)


def _check_queue(
    conn: Any, queue: Any, broker_url: str, mgmt: str, api_ok: bool, timeout_s: float
) -> tuple[list[Finding], float | None]:
    """Findings about one declared queue, and its own consumer timeout if the API shows one."""
    from amqp.exceptions import NotFound, PreconditionFailed

    findings: list[Finding] = []
    channel = conn.channel()
    try:
        _name, messages, consumers = queue.bind(channel).queue_declare(passive=True)
    except NotFound:
        return [], None  # not there yet: the first worker will declare it
    finally:
        _close(channel)
    if messages and not consumers:
        findings.append(
            AMQP_IDLE_QUEUE.finding(
                f"queue {queue.name!r} holds {messages} messages and has no consumer",
                [
                    Evidence(
                        f"queue {queue.name}",
                        {"messages": messages, "consumers": consumers},
                        _ORIGIN,
                    )
                ],
            )
        )
    declared = dict(queue.queue_arguments or {})
    queue_timeout = None
    if api_ok:  # per-queue consumer timeout (argument or policy); the server-wide value
        # (rabbitmq.conf) is not read: the caller assumes the default
        vhost = urllib.parse.quote(_vhost(broker_url), safe="")
        try:
            info = _api(mgmt, f"/api/queues/{vhost}/{urllib.parse.quote(queue.name)}", timeout_s)
        except Exception:  # a user without management rights on the queue: keep the default
            info = {}
        policy = info.get("effective_policy_definition") or {}
        raw = (info.get("arguments") or {}).get(
            "x-consumer-timeout", policy.get("consumer-timeout")
        )
        queue_timeout = None if raw is None else float(raw) / 1000.0
    # what the worker will do: declare it with its arguments (authoritative, and a no-op
    # on an equivalent queue)
    probe = conn.channel()
    try:
        queue.bind(probe).queue_declare(passive=False)
    except PreconditionFailed as exc:
        findings.append(_differ(queue.name, declared, str(exc)))
    finally:
        _close(probe)
    return findings, queue_timeout


def _differ(name: str, declared: dict[str, Any], actual: Any) -> Finding:
    return AMQP_QUEUE_ARGUMENTS.finding(
        f"queue {name!r} exists with other arguments than declared: a worker declaring it"
        " stops with PRECONDITION_FAILED",
        [
            Evidence(f"declared {name}.arguments", declared, K.task_queues),
            Evidence(f"existing {name}.arguments", actual, _ORIGIN),
        ],
    )


def _close(channel: Any) -> None:
    try:
        channel.close()
    except Exception:  # a channel RabbitMQ already closed (404/406) cannot be closed again
        return
