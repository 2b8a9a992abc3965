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
import logging
import time
from typing import TYPE_CHECKING, Any

from celery_kit.config.sections import DlqSettings
from celery_kit.coordination.client import KitRedis, resources
from celery_kit.coordination.dead_letter import MALFORMED, REPLAYS_HEADER, DeadLetter
from celery_kit.exceptions import DeadLetterLookupError
from celery_kit.state import settings_of

if TYPE_CHECKING:
    import redis
    from celery import Celery
    from celery.result import AsyncResult

__all__ = ["DeadLetterStore"]

logger = logging.getLogger(__name__)

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
            settings = DlqSettings() if app is None else settings_of(app).dlq
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

    def resolve(self, id_or_prefix: str) -> str:
        """The id of the one kept entry that is ``id_or_prefix`` or starts with it.

        Raises:
            DeadLetterLookupError: no entry matches, or several do (they are named).
        """
        client, keys = self._kr.client, self._kr.keys
        if id_or_prefix and client.exists(keys.dlq_entry(id_or_prefix)):
            return id_or_prefix
        ids = [
            i.decode() if isinstance(i, bytes) else str(i)
            for i in client.zrevrange(keys.dlq_index(), 0, -1)
        ]
        found = [i for i in ids if id_or_prefix and i.startswith(id_or_prefix)]
        if found:  # the index may still name expired entries
            kept = client.mget([keys.dlq_entry(i) for i in found])
            found = [i for i, raw in zip(found, kept, strict=False) if raw is not None]
        if not found:
            raise DeadLetterLookupError(
                f"no dead letter with id or id prefix {id_or_prefix!r} (expired, replayed or"
                " purged? `kit dlq list` shows the kept ones)"
            )
        if len(found) > 1:
            shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            raise DeadLetterLookupError(
                f"id prefix {id_or_prefix!r} is ambiguous: {len(found)} dead letters match"
                f" ({shown}); give more characters"
            )
        return found[0]

    def list(
        self, *, task: str | None = None, limit: int | None = None, reason: str | None = None
    ) -> list[DeadLetter]:
        """Entries, newest first, optionally only those of one task name and/or reason."""
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
                if (task is None or entry.task == task) and (
                    reason is None or entry.reason == reason
                ):
                    out.append(entry)
                    if limit is not None and len(out) >= limit:
                        return out
        return out

    def count(self) -> int:
        """Entries kept: the index without those past ``retention_s`` (one round trip)."""
        since_ms = int((time.time() - self.settings.retention_s) * 1000)
        return int(self._kr.client.zcount(self._kr.keys.dlq_index(), since_ms, "+inf"))

    def delete(self, task_id: str) -> bool:
        """Remove one entry; False if it was not there."""
        client, keys = self._kr.client, self._kr.keys
        pipe = client.pipeline(transaction=True)
        pipe.delete(keys.dlq_entry(task_id))
        pipe.zrem(keys.dlq_index(), task_id)
        removed, _ = pipe.execute()
        return bool(removed)

    def purge(self, *, task: str | None = None, reason: str | None = None) -> int:
        """Remove every entry (or those of one task and/or reason); returns how many."""
        entries = self.list(task=task, reason=reason)
        for entry in entries:
            self.delete(entry.id)
        return len(entries)

    def replay(self, app: Celery, entry: DeadLetter) -> AsyncResult[Any]:
        """Publish ``entry`` again (same task id, original routing, retries reset), then
        remove it from the store. The worker-lost count of the id is reset too, and the
        stale FAILURE result is forgotten first, so the id reads PENDING until the replay
        finishes instead of reporting the old failure to whoever polls it. A task whose ETA
        is still ahead keeps it (on Redis the publish path puts it into the delay set)."""
        if entry.reason == MALFORMED:
            from celery_kit.exceptions import NotReplayableError

            raise NotReplayableError(
                f"dead letter {entry.id} is a malformed message ({entry.exception}): there is"
                " no valid task to publish again. Inspect it with `kit dlq show`, fix the"
                f" sender, then remove it with `kit dlq purge --reason {MALFORMED}`"
            )
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
            eta=entry.remaining_eta(),
            **entry.routing(),
        )
        self.delete(entry.id)
        return result
