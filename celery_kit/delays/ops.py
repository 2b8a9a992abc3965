"""Operations on the delay set of an app: count, list, show, cancel (``kit delays``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from celery_kit.exceptions import ConfigError
from celery_kit.state import settings_of
from celery_kit.transport import delayed

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.transport.delayed import Delayed

__all__ = ["DelaySet", "describe"]


class DelaySet(AbstractContextManager["DelaySet"]):
    """The app's delay set on its broker (a connection of its own; close it, or use
    ``with``).

    Raises:
        ConfigError: the app does not use the delay set (no Redis broker with the kit's
            transport, or ``delays.enabled = false``).
    """

    def __init__(self, app: Celery) -> None:
        if not settings_of(app).uses_delay_set:
            raise ConfigError(
                "this app has no delay set: it needs a Redis broker with broker.transport ="
                ' "kit" and delays.enabled = true (on RabbitMQ, countdowns wait in the'
                " worker, bounded by tasks.max_countdown_s)"
            )
        self.app = app
        self._conn = app.connection_for_write()
        self.channel: Any = self._conn.default_channel

    def count(self) -> int:
        """Messages waiting."""
        return delayed.count(self.channel)

    def list(self, *, limit: int | None = None, task: str | None = None) -> list[Delayed]:
        """Waiting messages, earliest due first."""
        items = delayed.iter_delayed(self.channel)
        out = []
        for item in items:
            if task is None or item.task_name == task:
                out.append(item)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def get(self, task_id: str) -> Delayed | None:
        """The waiting message of ``task_id``, or None."""
        return delayed.find(self.channel, task_id)

    def cancel(self, task_id: str) -> Delayed | None:
        """Remove ``task_id`` from the delay set and mark its result REVOKED; None when it
        was not waiting (already moved to its queue: revoke it there with Celery)."""
        item = delayed.cancel(self.channel, task_id)
        if item is not None:
            self.app.backend.mark_as_revoked(task_id, reason="cancelled while delayed")
        return item

    def close(self) -> None:
        """Release the broker connection."""
        self._conn.release()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def describe(item: Delayed, now: float) -> dict[str, Any]:
    """A plain dict of one delayed message (``--json`` and text output)."""
    headers = item.payload.get("headers", {})
    info = item.payload.get("properties", {}).get("delivery_info", {})
    return {
        "id": item.task_id,
        "task": item.task_name,
        "due_at": headers.get("eta"),
        "due_in_s": round(item.due - now, 3),
        "queue": info.get("routing_key"),
        "list": item.queue_key,
        "args": headers.get("argsrepr"),
        "kwargs": headers.get("kwargsrepr"),
        "retries": headers.get("retries"),
    }
