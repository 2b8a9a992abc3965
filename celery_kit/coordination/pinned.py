"""The kit's scripts on one pinned connection per process, with replies that can wait.

redis-py's ``Script.__call__`` takes a connection from the pool, builds the command,
checks its health, parses and gives the connection back on every call; a kit task pays
that in its pool process for each script. :class:`ScriptConn` keeps one connection for the
life of the process (the :class:`~celery_kit.coordination.client.KitRedis` that owns it is
rebuilt after a fork, so a child never shares its parent's socket) and sends ``EVALSHA``
itself. It can also *send without waiting* (:meth:`ScriptConn.send`): the reply is read at
the next call on the connection, which waits once for both, or by :meth:`ScriptConn.settle`
(the lease thread, or process exit).

What happens when things go wrong:

* connection error or timeout: the connection is dropped and everything whose reply was
  not read yet is sent again on a new one (``redis.retries`` times, with backoff), then the
  error is raised; unread sends stay queued and go out again on the next call. Every kit
  script gives the same result when run twice with the same arguments;
* each script goes out once per connection as ``EVAL`` (its text, which caches it on the
  server), then as ``EVALSHA``: so a command sent without waiting cannot fail for a script
  cache emptied by a restart (a restart always means a new connection);
* ``NOSCRIPT`` all the same (``SCRIPT FLUSH`` on a live connection): that command is sent
  again as ``EVAL`` when its reply is read;
* another error reply: raised by :meth:`ScriptConn.run`, stored on a :class:`Sent`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import NoScriptError, ResponseError


def _fast_packer() -> Callable[[tuple[Any, ...]], bytes] | None:
    """hiredis's command packer (redis-py wraps it; called directly it is ~5x cheaper)."""
    try:
        import hiredis
    except ImportError:  # pragma: no cover - hiredis is optional
        return None
    found: Callable[[tuple[Any, ...]], bytes] | None = getattr(hiredis, "pack_command", None)
    return found


_PACK = _fast_packer()

__all__ = ["ScriptConn", "Sent"]


@dataclass(eq=False)
class Sent:
    """A script sent without waiting; ``done`` once its reply (or error) is read."""

    source: str
    keys: list[str]
    args: list[Any]
    #: Called with this object once the reply is read, by whichever thread read it.
    on_done: Callable[[Sent], None] | None = None
    done: bool = False
    value: Any = None
    error: Exception | None = None
    #: Until when (``time.monotonic()``) to keep sending it again after connection errors.
    give_up_at: float = float("inf")
    #: Which connection it was last sent on (-1: not sent yet).
    generation: int = field(default=-1, repr=False)
    #: Send the text (``EVAL``) rather than the digest: the server lost its script cache.
    as_text: bool = field(default=False, repr=False)


class ScriptConn:
    """Runs kit scripts on one connection of ``client``'s pool, kept until :meth:`close`.

    Thread-safe (one lock; the lease thread shares it with the task's thread).
    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        # a redis.connection.Connection (redis-py leaves its methods unannotated)
        self._conn: Any = None
        self._lock = threading.Lock()
        self._unread: deque[Sent] = deque()
        self._shas: dict[str, str] = {}
        #: Scripts sent as text on the current connection (so the server has them cached).
        self._evaled: set[str] = set()
        self._generation = 0

    def run(
        self,
        source: str,
        keys: list[str],
        args: list[Any],
        *,
        busy: Callable[[], Any] | None = None,
    ) -> Any:
        """Run ``source`` and return its reply (reads any earlier unread replies first).

        ``busy``: called instead when another thread is using the connection (thread and
        green pools: concurrent tasks then use the pool's connections, not a queue here).
        """
        mine = Sent(source, keys, args)
        if busy is not None and not self._lock.acquire(blocking=False):
            return busy()
        if busy is None:
            self._lock.acquire()
        try:
            self._unread.append(mine)
            try:
                self._retrying(self._exchange)
            finally:
                if not mine.done and mine in self._unread:
                    self._unread.remove(mine)
        finally:
            self._lock.release()
        if mine.error is not None:
            raise mine.error
        return mine.value

    def send(self, sent: Sent, *, if_free: bool = False) -> bool:
        """Send ``sent`` without reading its reply; with ``if_free``, only if no other
        thread is using the connection (returns False, nothing sent, if one is). On a
        connection error it stays queued (sent again by the next call) and the error is
        raised."""
        if not self._lock.acquire(blocking=not if_free):
            return False
        try:
            self._unread.append(sent)
            self._retrying(self._flush)
        finally:
            self._lock.release()
        return True

    def settle(self, sent: Sent | None = None) -> None:
        """Read replies until ``sent`` (or every queued send) is done; resends on error."""
        with self._lock:
            if (sent is None and self._unread) or (sent is not None and not sent.done):
                self._retrying(self._exchange)

    def give_up(self, now: float, error: Exception) -> int:
        """Finish with ``error`` every unread send whose ``give_up_at`` is past and whose
        reply is not on the wire; returns how many."""
        with self._lock:
            late = [
                s for s in self._unread if s.give_up_at <= now and s.generation != self._generation
            ]
            for sent in late:
                self._unread.remove(sent)
                self._finish(sent, None, error)
            return len(late)

    def pending(self) -> int:
        """How many sends wait for their reply."""
        with self._lock:
            return len(self._unread)

    def close(self) -> None:
        """Give the connection back (unread replies are dropped with it)."""
        with self._lock:
            self._drop(None)

    # -- under the lock ---------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._pool.get_connection()
            self._generation += 1
        return self._conn

    def _retrying(self, action: Callable[[], None]) -> None:
        try:
            self._connection().retry.call_with_retry(action, self._drop)
        except BaseException:
            # a connection error after the last retry, or an exception raised into the
            # middle of a read (a soft time limit): what the socket holds is unknown
            self._drop(None)
            raise

    def _drop(self, _error: Exception | None) -> None:
        conn, self._conn = self._conn, None
        self._generation += 1  # whatever was sent on it goes out again
        self._evaled.clear()  # a new connection may mean a restarted server
        if conn is not None:
            conn.disconnect()
            self._pool.release(conn)

    def _pack(self, sent: Sent, conn: Any) -> Any:
        if sent.as_text or sent.source not in self._evaled:
            self._evaled.add(sent.source)
            head: list[Any] = ["EVAL", sent.source]
        else:
            sha = self._shas.get(sent.source)
            if sha is None:
                sha = self._shas[sent.source] = hashlib.sha1(sent.source.encode()).hexdigest()
            head = ["EVALSHA", sha]
        if _PACK is not None:
            return [_PACK((*head, len(sent.keys), *sent.keys, *sent.args))]
        return conn.pack_command(*head, len(sent.keys), *sent.keys, *sent.args)

    def _flush(self) -> None:
        """Send every queued command not yet sent on this connection."""
        conn = self._connection()
        # no health-check PING while replies are unread: it would read one of them
        check = not any(s.generation == self._generation for s in self._unread)
        for sent in self._unread:
            if sent.generation != self._generation:
                conn.send_packed_command(self._pack(sent, conn), check_health=check)
                check = False
                sent.generation = self._generation

    def _exchange(self) -> None:
        """Send what is queued, then read every reply in order until nothing is queued."""
        while self._unread:
            self._flush()
            conn = self._connection()
            for _ in range(len(self._unread)):
                sent = self._unread.popleft()
                try:
                    value = conn.read_response()
                except NoScriptError:  # after a restart: EVAL puts it back in the cache
                    sent.as_text, sent.generation = True, -1
                    self._unread.append(sent)
                    continue
                except ResponseError as exc:
                    self._finish(sent, None, exc)
                    continue
                except BaseException:
                    self._unread.appendleft(sent)
                    raise
                self._finish(sent, value, None)

    def _finish(self, sent: Sent, value: Any, error: Exception | None) -> None:
        sent.done, sent.value, sent.error = True, value, error
        if sent.on_done is not None:
            sent.on_done(sent)
