"""The mover: a leader-elected loop that moves due delayed messages into their queues.

Every worker's main process runs one by default (``delays.mover_in_worker``) and
``celery -A proj kit mover`` runs one alone; a lock with a renewed lease
(:class:`celery_kit.coordination.locks.Lock`) makes one of them the leader, and only the
leader moves. Each batch is one Lua script (one round trip) that moves each message with
the transport's own put step and removes it from the delay set in the same step, so a
mover killed mid-batch, or two movers at once, never lose or duplicate a message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery_kit.coordination.locks import Lock
from celery_kit.exceptions import ConfigError
from celery_kit.state import settings_of
from celery_kit.topology.delays import delay_clock, move_hooks
from celery_kit.transport.delayed import move_due

if TYPE_CHECKING:
    from celery import Celery
    from kombu import Connection

__all__ = ["LOCK_NAME", "Mover", "MoverStats"]

logger = logging.getLogger(__name__)

#: The leader lock's name (key ``<redis.key_prefix>:lock:delays-mover``).
LOCK_NAME = "delays-mover"


@dataclass
class MoverStats:
    """What this mover did (bench and tests read it)."""

    moved: int = 0
    round_trips: int = 0
    leader_terms: int = 0


class Mover:
    """Moves due messages of ``app`` while it is the leader.

    Args:
        app: a ``make_app()`` app with a Redis broker and the kit's transport.
        clock: epoch-seconds clock compared with due times (default: the app's delay
            clock, :func:`celery_kit.topology.delays.set_clock`).
        batch, interval_s, lock_ttl_s: override ``delays.*``.

    Raises:
        ConfigError: the app has no delay set.
    """

    def __init__(
        self,
        app: Celery,
        *,
        clock: Callable[[], float] | None = None,
        batch: int | None = None,
        interval_s: float | None = None,
        lock_ttl_s: float | None = None,
    ) -> None:
        settings = settings_of(app)
        if not settings.uses_delay_set:
            raise ConfigError(
                "this app has no delay set for a mover to move: it needs a Redis broker with"
                ' broker.transport = "kit" and delays.enabled = true'
            )
        conf = settings.delays
        self.app = app
        self._clock = clock
        self.batch = batch or conf.batch
        self.interval_s = interval_s or conf.mover_interval_s
        self.lock = Lock(LOCK_NAME, ttl_s=lock_ttl_s or conf.lock_ttl_s, app=app)
        self.stats = MoverStats()
        self.leader = False
        self._conn: Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def now(self) -> float:
        """The mover's clock."""
        return (self._clock or delay_clock(self.app))()

    def _channel(self) -> Any:
        if self._conn is None:
            self._conn = self.app.connection_for_write()
        channel = self._conn.default_channel
        if not hasattr(channel, "delay_key") or not channel.delay_key:
            raise RuntimeError(
                "the broker transport has no delay set: the mover needs a Redis broker with"
                " broker.transport = 'kit' and delays.enabled = true"
            )
        return channel

    def move_due(self) -> int:
        """Move everything due now, batch by batch; how many were moved."""
        channel = self._channel()
        moved = 0
        while True:
            taken, lags = move_due(channel, self.now(), self.batch)
            self.stats.round_trips += 1
            moved += len(lags)
            if lags:
                for hook in move_hooks(self.app):
                    try:
                        hook(lags)
                    except Exception:  # an observer never stops the mover
                        logger.exception("celery_kit: a mover hook failed")
            if taken < self.batch or self._stop.is_set():
                break
        self.stats.moved += moved
        return moved

    def step(self) -> int:
        """One round: become (or stay) leader, then move what is due; how many moved."""
        if self.leader and self.lock.lost:
            logger.warning("celery_kit mover: leadership lost (lease not renewed in time)")
            self.lock.release()
            self.leader = False
        if not self.leader:
            self.leader = self.lock.acquire()
            if not self.leader:
                return 0
            self.stats.leader_terms += 1
            logger.info("celery_kit mover: this process is the leader")
        return self.move_due()

    def run(self) -> None:
        """Loop until :meth:`stop` (errors are logged and retried after the interval)."""
        while not self._stop.is_set():
            try:
                self.step()
                if self._failing:
                    logger.info("celery_kit mover: moving again")
                self._failing = False
            except Exception as exc:
                if not self._failing:
                    logger.warning("celery_kit mover: cannot move delayed messages: %r", exc)
                self._failing = True
                self._reset()
            self._stop.wait(self.interval_s)
        self._release()

    def start(self) -> None:
        """Run :meth:`run` in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="celery-kit-mover", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask :meth:`run` to return after the current batch (signal-handler safe)."""
        self._stop.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and give up leadership."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        else:
            self._release()

    def _release(self) -> None:
        if self.leader:
            self.lock.release()
            self.leader = False
        self._reset()

    def _reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # a broken connection may fail to close
                logger.debug("celery_kit mover: closing a broken connection failed")
