"""One dead letter: what failed, why, where it was routed, and the headers kept across retries."""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from kombu.utils.json import dumps, loads

__all__ = [
    "FIRST_FAILED_HEADER",
    "MALFORMED",
    "REPLAYS_HEADER",
    "DeadLetter",
    "dead_letter_from",
    "describe",
    "entry_json",
    "now_iso",
]

#: Traceback lines kept (the last ones: where it failed).
_TRACEBACK_LINES = 30
_TEXT_MAX = 4000
_LINE_MAX = 240


def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


#: Message headers the kit keeps on a task across retries and replays (custom headers
#: survive Celery's ``retry()``): when it first failed, and how often it was replayed.
FIRST_FAILED_HEADER = "kit_first_failed_at"
REPLAYS_HEADER = "kit_replays"
#: Reason of dead letters that are not task messages at all (see ``celery_kit.tasks.envelope``).
MALFORMED = "malformed"


@dataclass
class DeadLetter:
    """One dead-lettered task, with what is needed to understand and replay it."""

    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    #: ``permanent``, ``retries_exhausted``, ``worker_lost``, ``time_limit``, ``failed``,
    #: ``not_registered`` (no such task on the worker: replay once deployed) or
    #: ``malformed`` (not a task message; kept for inspection, never replayed).
    reason: str
    exception_type: str
    exception: str
    traceback: str
    #: Attempts made (runs, or deliveries that killed their process).
    attempts: int
    dead_lettered_at: str = field(default_factory=now_iso)
    first_attempt_at: str | None = None
    #: Original routing, reused by replay.
    queue: str | None = None
    exchange: str | None = None
    routing_key: str | None = None
    priority: int | None = None
    hostname: str | None = None
    replays: int = 0
    #: ``malformed`` only: the start of the message as received, for inspection.
    payload: str | None = None
    #: The message's ETA (ISO 8601), if it had one: a replay keeps what is left of it.
    eta: str | None = None

    def to_json(self) -> str:
        """JSON text (kombu's encoder: dates, UUIDs and decimals survive)."""
        return str(dumps(asdict(self)))

    @classmethod
    def from_json(cls, text: str | bytes) -> DeadLetter:
        """Parse :meth:`to_json` output, ignoring fields a newer kit may have added."""
        data = loads(text)
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)

    def routing(self) -> dict[str, Any]:
        """``apply_async`` routing options that send it where it first went."""
        options: dict[str, Any] = {}
        if self.exchange and self.routing_key:
            options.update(exchange=self.exchange, routing_key=self.routing_key)
        elif self.queue or self.routing_key:
            options["queue"] = self.queue or self.routing_key
        if self.priority is not None:
            options["priority"] = self.priority
        return options

    def remaining_eta(self, now: datetime | None = None) -> datetime | None:
        """The ETA if it is still ahead (a replay keeps the remaining delay), else None."""
        if not self.eta:
            return None
        when = datetime.fromisoformat(self.eta)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return when if when > (now or datetime.now(timezone.utc)) else None


def dead_letter_from(
    exc: BaseException,
    *,
    task_id: str,
    task_name: str,
    args: Any,
    kwargs: Any,
    delivery_info: Mapping[str, Any] | None,
    headers: Mapping[str, Any] | None,
    reason: str,
    attempts: int,
    priority: int | None,
    hostname: str | None,
    eta: Any = None,
) -> DeadLetter:
    """The entry for a failed delivery: what failed, why, and where it was routed.

    ``priority`` must be the kit's value: a worker's main process only sees the broker's
    (reversed on Redis), see ``celery_kit.topology.priority.delivered_priority``.
    """
    kind, message, tb = describe(exc)
    info, hdrs = delivery_info or {}, headers or {}
    exchange = info.get("exchange") or None
    return DeadLetter(
        id=str(task_id),
        task=str(task_name),
        args=list(args or ()),
        kwargs=dict(kwargs or {}),
        reason=reason,
        exception_type=kind,
        exception=message,
        traceback=tb,
        attempts=attempts,
        first_attempt_at=hdrs.get(FIRST_FAILED_HEADER) or now_iso(),
        queue=info.get("routing_key") if not exchange else None,
        exchange=exchange,
        routing_key=info.get("routing_key"),
        priority=priority,
        hostname=hostname,
        replays=int(hdrs.get(REPLAYS_HEADER, 0) or 0),
        eta=_iso(eta if eta is not None else hdrs.get("eta")),
    )


def _iso(eta: Any) -> str | None:
    if eta is None or eta == "":
        return None
    return eta.isoformat() if isinstance(eta, datetime) else str(eta)


def describe(exc: BaseException) -> tuple[str, str, str]:
    """``(type, message, last traceback lines)`` of ``exc``, each size-capped."""
    kind = type(exc)
    name = f"{kind.__module__}.{kind.__qualname__}"
    lines = "".join(traceback.format_exception(kind, exc, exc.__traceback__)).splitlines()
    # long lines (a huge message) are cut so the frames above them survive the size cap
    tail = "\n".join(line[:_LINE_MAX] for line in lines[-_TRACEBACK_LINES:])
    return name, str(exc)[:_TEXT_MAX], tail[-_TEXT_MAX:]


def entry_json(entry: DeadLetter) -> dict[str, Any]:
    """Plain dict for ``--json`` output."""
    return dict(json.loads(entry.to_json()))
