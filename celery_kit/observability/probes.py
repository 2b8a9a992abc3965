"""Health probes: liveness and readiness read the worker's heartbeat file (standard library only).

``python -m celery_kit.health --liveness`` answers in milliseconds without importing Celery
or the app. The heartbeat is written by
:class:`celery_kit.observability.heartbeat.Heartbeat` in the worker's main process.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from celery_kit.observability.heartbeat_file import (
    HEARTBEAT_FILE_ENV,
    default_heartbeat_file,
    heartbeat_files,
)

__all__ = [
    "CONNECT_TIMEOUT_S",
    "HEARTBEAT_FILE_ENV",
    "Probe",
    "ProbeResult",
    "check_liveness",
    "check_readiness",
    "main",
    "probe",
]

#: A readiness probe's TCP connect to the broker waits at most this long.
CONNECT_TIMEOUT_S = 0.5

Probe = Literal["liveness", "readiness"]


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one probe: ``ok`` and a one-line explanation."""

    ok: bool
    message: str


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
    node: str | None = None,
    app_name: str | None = None,
) -> ProbeResult:
    """Run a probe against the heartbeat of the worker asked about.

    Args:
        kind: ``"liveness"`` or ``"readiness"``.
        file: heartbeat path or template (``%a``/``%n``); default: the default heartbeat
            file. With a template of the user's, every matching worker must pass.
        max_age_s: override of the worker's ``health.max_age_s``.
        now: the current epoch time (tests).
        node: only this worker's heartbeat (``celery`` or ``celery@host``).
        app_name: only heartbeats of this app (the default file is scoped by app name).
    """
    template = file or default_heartbeat_file()
    paths = heartbeat_files(template, node=node, app_name=app_name)
    state = "live" if kind == "liveness" else "ready"
    if not paths:
        return ProbeResult(
            False,
            f"NOT {state}: no heartbeat at {template} (app {app_name or 'any'}, node"
            f" {node or 'any'}): worker not started yet, health.enabled off, or another"
            " heartbeat_file",
        )
    if len(paths) > 1 and file is None:
        return ProbeResult(
            False,
            f"NOT {state}: {len(paths)} workers' heartbeats match ({', '.join(map(str, paths))});"
            " name the worker to probe with --node NODE (and --app-name APP), or --file",
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
    parser.add_argument("--node", help="only this worker (node name, e.g. celery or celery@host)")
    parser.add_argument("--app-name", help="only this app's workers (make_app's name)")
    args = parser.parse_args(argv)
    file = args.file or os.environ.get(HEARTBEAT_FILE_ENV) or None
    result = probe(
        args.kind, file=file, max_age_s=args.max_age, node=args.node, app_name=args.app_name
    )
    print(result.message)
    return 0 if result.ok else 1


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in tests
    raise SystemExit(main())
