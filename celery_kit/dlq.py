"""The dead-letter store: failed tasks kept on Redis for inspection and replay.

One implementation for both brokers. RabbitMQ's dead-lettering only sees messages that
are *rejected*, while Celery acknowledges a failed late-ack task (and never rejects one
that exhausted its retries), it carries no exception or traceback, and Redis has no such
feature at all; a store on the kit's Redis gives both brokers the same entries, the same
retention and the same ``celery kit dlq`` commands.

Layout: ``<prefix>:dlq:entry:<task id>`` (JSON, expires after ``dlq.retention_s``) and
``<prefix>:dlq:index`` (sorted set by time, trimmed to ``dlq.max_entries`` and to the
retention on every write, its own expiry refreshed). Writing is one Lua script.

What happens when things die: a failure to write (Redis unreachable) is logged at
ERROR with the whole entry, and the task still ends FAILURE in the result backend.
Replay publishes first and deletes the entry second: a crash in between leaves the entry
to be replayed again (at least once, never lost).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from kombu.utils.json import dumps, loads

from celery_kit.redis_client import KitRedis, resources

if TYPE_CHECKING:
    import redis
    from celery import Celery
    from celery.result import AsyncResult

    from celery_kit.config import DlqSettings

__all__ = ["DeadLetter", "DeadLetterStore", "now_iso"]

logger = logging.getLogger(__name__)

#: Traceback lines kept (the last ones: where it failed).
_TRACEBACK_LINES = 30
_TEXT_MAX = 4000
_LINE_MAX = 240

# KEYS index, entry; ARGV id, json, now_ms, retention_ms, max_entries, entry_prefix
_ADD = """
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[4]))
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if extra > 0 then
  local old = redis.call('ZPOPMIN', KEYS[1], extra)
  for i = 1, #old, 2 do redis.call('DEL', ARGV[6] .. old[i]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


#: Message headers the kit keeps on a task across retries and replays (custom headers
#: survive Celery's ``retry()``): when it first failed, and how often it was replayed.
FIRST_FAILED_HEADER = "kit_first_failed_at"
REPLAYS_HEADER = "kit_replays"


@dataclass
class DeadLetter:
    """One dead-lettered task, with what is needed to understand and replay it."""

    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    #: ``permanent``, ``retries_exhausted``, ``worker_lost``, ``time_limit`` or ``failed``.
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
) -> DeadLetter:
    """The entry for a failed delivery: what failed, why, and where it was routed.

    ``priority`` must be the kit's value: a worker's main process only sees the broker's
    (reversed on Redis), see ``celery_kit.queues.delivered_priority``.
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
    )


def describe(exc: BaseException) -> tuple[str, str, str]:
    """``(type, message, last traceback lines)`` of ``exc``, each size-capped."""
    kind = type(exc)
    name = f"{kind.__module__}.{kind.__qualname__}"
    lines = "".join(traceback.format_exception(kind, exc, exc.__traceback__)).splitlines()
    # long lines (a huge message) are cut so the frames above them survive the size cap
    tail = "\n".join(line[:_LINE_MAX] for line in lines[-_TRACEBACK_LINES:])
    return name, str(exc)[:_TEXT_MAX], tail[-_TEXT_MAX:]


class DeadLetterStore:
    """Read and write dead letters.

    Args:
        app: a ``make_app()`` app (its Redis, key prefix and ``[dlq]`` settings), or
        client: a ``redis.Redis`` with ``key_prefix`` and ``settings``.
    """

    def __init__(
        self,
        app: Celery | None = None,
        *,
        client: redis.Redis | None = None,
        key_prefix: str | None = None,
        settings: DlqSettings | None = None,
    ) -> None:
        if settings is None:
            if app is None:
                from celery_kit.config import DlqSettings

                settings = DlqSettings()
            else:
                from celery_kit.app import settings_of

                settings = settings_of(app).dlq
        self.settings = settings
        self._kr: KitRedis = resources(app, client=client, key_prefix=key_prefix)

    def add(self, entry: DeadLetter) -> None:
        """Store ``entry`` (replacing an older one for the same id): one round trip."""
        keys = self._kr.keys
        retention_ms = self.settings.retention_s * 1000
        self._kr.run(
            _ADD,
            [keys.dlq_index(), keys.dlq_entry(entry.id)],
            [
                entry.id,
                entry.to_json(),
                int(time.time() * 1000),
                retention_ms,
                self.settings.max_entries,
                keys.dlq_entry(""),
            ],
        )

    def add_or_log(self, entry: DeadLetter) -> bool:
        """:meth:`add`, but never raise: on failure log the entry at ERROR."""
        try:
            self.add(entry)
        except Exception as exc:
            logger.error(
                "celery_kit: could not dead-letter task %s[%s] (%s); entry: %s",
                entry.task,
                entry.id,
                exc,
                entry.to_json(),
            )
            return False
        logger.warning(
            "celery_kit: dead-lettered %s[%s] (%s after %d attempt(s)): %s",
            entry.task,
            entry.id,
            entry.reason,
            entry.attempts,
            entry.exception_type,
        )
        return True

    def get(self, task_id: str) -> DeadLetter | None:
        """The entry for ``task_id``, if still kept."""
        raw = self._kr.client.get(self._kr.keys.dlq_entry(task_id))
        return DeadLetter.from_json(raw) if raw is not None else None

    def list(self, *, task: str | None = None, limit: int | None = None) -> list[DeadLetter]:
        """Entries, newest first, optionally only those of one task name."""
        client, keys = self._kr.client, self._kr.keys
        ids = [
            i.decode() if isinstance(i, bytes) else str(i)
            for i in client.zrevrange(keys.dlq_index(), 0, -1)
        ]
        out: list[DeadLetter] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for raw in client.mget([keys.dlq_entry(i) for i in chunk]):
                if raw is None:
                    continue  # expired; the index is trimmed on the next write
                entry = DeadLetter.from_json(raw)
                if task is None or entry.task == task:
                    out.append(entry)
                    if limit is not None and len(out) >= limit:
                        return out
        return out

    def delete(self, task_id: str) -> bool:
        """Remove one entry; False if it was not there."""
        client, keys = self._kr.client, self._kr.keys
        pipe = client.pipeline(transaction=True)
        pipe.delete(keys.dlq_entry(task_id))
        pipe.zrem(keys.dlq_index(), task_id)
        removed, _ = pipe.execute()
        return bool(removed)

    def purge(self, *, task: str | None = None) -> int:
        """Remove every entry (or every entry of one task); returns how many."""
        entries = self.list(task=task)
        for entry in entries:
            self.delete(entry.id)
        return len(entries)

    def replay(self, app: Celery, entry: DeadLetter) -> AsyncResult[Any]:
        """Publish ``entry`` again (same task id, original routing, retries reset), then
        remove it from the store. The worker-lost count of the id is reset too, and the
        stale FAILURE result is forgotten first, so the id reads PENDING until the replay
        finishes instead of reporting the old failure to whoever polls it."""
        client, keys = self._kr.client, self._kr.keys
        client.delete(keys.worker_lost(entry.id))
        with contextlib.suppress(NotImplementedError):  # backends without forget()
            app.backend.forget(entry.id)
        result = app.send_task(
            entry.task,
            args=entry.args,
            kwargs=entry.kwargs,
            task_id=entry.id,
            headers={REPLAYS_HEADER: entry.replays + 1},
            **entry.routing(),
        )
        self.delete(entry.id)
        return result


def entry_json(entry: DeadLetter) -> dict[str, Any]:
    """Plain dict for ``--json`` output."""
    return dict(json.loads(entry.to_json()))
