"""Health probes: liveness and readiness read the worker's heartbeat file; a deployment report.

The probes use the standard library only, so ``python -m celery_kit.health --liveness``
answers in milliseconds without importing Celery or the app. The heartbeat is written by
:class:`celery_kit.heartbeat.Heartbeat` in the worker's main process.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "HEARTBEAT_FILE_ENV",
    "Probe",
    "ProbeResult",
    "check_liveness",
    "check_readiness",
    "default_heartbeat_file",
    "deployment_report",
    "expand_heartbeat_path",
    "main",
    "probe",
    "report_problems",
]

#: Format version written in every heartbeat.
HEARTBEAT_VERSION = 1
#: Read by the stand-alone probe when ``--file`` is not given (same name as the setting).
HEARTBEAT_FILE_ENV = "CELERY_KIT_HEALTH__HEARTBEAT_FILE"
#: File name of the default heartbeat, in the temporary directory.
DEFAULT_HEARTBEAT_NAME = "celery-kit-%n.heartbeat.json"
#: A readiness probe's TCP connect to the broker waits at most this long.
CONNECT_TIMEOUT_S = 0.5

Probe = Literal["liveness", "readiness"]


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one probe: ``ok`` and a one-line explanation."""

    ok: bool
    message: str


def default_heartbeat_file() -> str:
    """``<temp dir>/celery-kit-%n.heartbeat.json`` (``%n``: the worker's node name)."""
    return os.path.join(tempfile.gettempdir(), DEFAULT_HEARTBEAT_NAME)


def expand_heartbeat_path(template: str, hostname: str) -> str:
    """Replace ``%n`` (node name, ``celery`` in ``celery@host``) and ``%h`` (full name)."""
    node = hostname.split("@", 1)[0]
    return template.replace("%n", node).replace("%h", hostname)


def _files(template: str) -> list[Path]:
    if "%n" in template or "%h" in template:
        pattern = glob.escape(template).replace("%n", "*").replace("%h", "*")
        return sorted(Path(p) for p in glob.glob(pattern))
    return [Path(template)] if Path(template).exists() else []


def _age(beat: dict[str, Any], key: str, now: float) -> float | None:
    value = beat.get(key)
    return None if not isinstance(value, (int, float)) else max(0.0, now - float(value))


def check_liveness(
    beat: dict[str, Any], *, max_age_s: float | None = None, now: float | None = None
) -> ProbeResult:
    """Live: the worker proved it consumes (or has nothing to consume) within the age.

    Args:
        beat: a parsed heartbeat.
        max_age_s: override of the worker's ``health.max_age_s``.
        now: the current epoch time (tests).
    """
    now = time.time() if now is None else now
    limit = float(max_age_s if max_age_s is not None else beat.get("max_age_s", 60.0))
    who = beat.get("hostname", "worker")
    age = _age(beat, "consuming_at", now)
    if age is not None and age <= limit:
        return ProbeResult(True, f"live: {who} consuming, last proof {age:.1f} s ago")
    loop = _age(beat, "written_at", now)
    why = beat.get("reason") or "no reason recorded"
    if loop is not None and loop > limit:
        why = f"heartbeat not written for {loop:.0f} s (stopped, frozen or blocked)"
    shown = "never" if age is None else f"{age:.0f} s ago"
    return ProbeResult(
        False, f"NOT live: {who} last proved it consumes {shown} (max {limit:g} s): {why}"
    )


def check_readiness(
    beat: dict[str, Any],
    *,
    max_age_s: float | None = None,
    now: float | None = None,
    connect: bool = True,
) -> ProbeResult:
    """Ready: live, consumer running, broker answered recently and reachable from here.

    Args:
        beat: a parsed heartbeat.
        max_age_s: override of the worker's ``health.max_age_s``.
        now: the current epoch time (tests).
        connect: also open a TCP connection to the broker address in the heartbeat.
    """
    now = time.time() if now is None else now
    live = check_liveness(beat, max_age_s=max_age_s, now=now)
    if not live.ok:
        return ProbeResult(False, live.message.replace("NOT live", "NOT ready", 1))
    limit = float(max_age_s if max_age_s is not None else beat.get("max_age_s", 60.0))
    who = beat.get("hostname", "worker")
    written = _age(beat, "written_at", now)
    if written is None or written > limit or not beat.get("ready"):
        why = beat.get("reason") or "consumer not running"
        return ProbeResult(False, f"NOT ready: {who}: {why}")
    broker = _age(beat, "broker_ok_at", now)
    if broker is None or broker > limit:
        return ProbeResult(False, f"NOT ready: {who}: no broker round trip for {limit:g} s")
    address = beat.get("broker_address")
    if connect and isinstance(address, list) and len(address) == 2:
        try:
            with socket.create_connection((str(address[0]), int(address[1])), CONNECT_TIMEOUT_S):
                pass
        except OSError as exc:
            return ProbeResult(
                False, f"NOT ready: broker {address[0]}:{address[1]} unreachable ({exc})"
            )
    return ProbeResult(True, f"ready: {who} consuming, broker answered {broker:.1f} s ago")


def probe(
    kind: Probe,
    *,
    file: str | None = None,
    max_age_s: float | None = None,
    now: float | None = None,
) -> ProbeResult:
    """Run a probe against every heartbeat matching ``file`` (all must pass).

    Args:
        kind: ``"liveness"`` or ``"readiness"``.
        file: heartbeat path or ``%n`` template; default: the default heartbeat file.
        max_age_s: override of the worker's ``health.max_age_s``.
        now: the current epoch time (tests).
    """
    template = file or default_heartbeat_file()
    paths = _files(template)
    if not paths:
        return ProbeResult(
            False,
            f"NOT {'live' if kind == 'liveness' else 'ready'}: no heartbeat at {template}"
            " (worker not started yet, health.enabled off, or another heartbeat_file)",
        )
    check = check_liveness if kind == "liveness" else check_readiness
    results = []
    for path in paths:
        try:
            beat = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            results.append(ProbeResult(False, f"NOT {kind}: unreadable heartbeat {path}: {exc}"))
            continue
        results.append(check(beat, max_age_s=max_age_s, now=now))
    return ProbeResult(all(r.ok for r in results), "\n".join(r.message for r in results))


# -- deployment report (imports Celery: only for `kit health` without a probe flag) -------


def deployment_report(app: Celery, *, timeout_s: float = 2.0) -> dict[str, Any]:
    """Workers seen, queue depths and oldest-message ages for ``app``'s deployment.

    Workers come from their Redis heartbeat keys (``health.redis_key``) when the kit has
    a Redis, else from a broadcast ping. Oldest-message age needs Redis.
    """
    from celery_kit.app import settings_of
    from celery_kit.depth import DepthReader

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
    from celery_kit.app import settings_of
    from celery_kit.exceptions import ConfigError

    settings = settings_of(app)
    if settings.health.redis_key:
        try:
            from celery_kit.heartbeat import read_worker_keys

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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m celery_kit.health --liveness|--readiness [--file F] [--max-age S]``.

    Returns 0 when the probe passes, 1 when it fails (Kubernetes restarts / unreadies).
    """
    parser = argparse.ArgumentParser(
        prog="python -m celery_kit.health", description="Probe a celery_kit worker's heartbeat."
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--liveness", action="store_const", const="liveness", dest="kind")
    mode.add_argument("--readiness", action="store_const", const="readiness", dest="kind")
    parser.add_argument("--file", help=f"heartbeat file or %%n template (env {HEARTBEAT_FILE_ENV})")
    parser.add_argument("--max-age", type=float, help="seconds (default: the worker's setting)")
    args = parser.parse_args(argv)
    file = args.file or os.environ.get(HEARTBEAT_FILE_ENV) or None
    result = probe(args.kind, file=file, max_age_s=args.max_age)
    print(result.message)
    return 0 if result.ok else 1


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in tests
    raise SystemExit(main())
