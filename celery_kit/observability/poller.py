"""The queue-length poller: samples every priority sub-queue into the kit's gauges.

One broker pass per sample sets the whole queue's length (celery-exporter's
``celery_queue_length``) and, on Redis, the length at each kit priority
(``celery_queue_length_by_priority``) from the same pipelined ``LLEN`` replies. When the
broker cannot be read the sample is skipped: every gauge keeps its last value (a scrape
still answers), one WARNING is logged per outage, and the next sample that succeeds
overwrites them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from celery_kit.observability.depth import DepthReader
from celery_kit.topology.priority import priority_map

if TYPE_CHECKING:
    from celery import Celery

    from celery_kit.observability.depth import QueueDepth
    from celery_kit.observability.metrics import KitMetrics

__all__ = ["QueueLengthPoller"]

logger = logging.getLogger(__name__)


class QueueLengthPoller:
    """Samples queue lengths (every priority sub-queue) into the kit's gauges.

    Args:
        app: the Celery app (broker connection settings).
        metrics: whose queue gauges to set (``queue_length``, ``queue_length_by_priority``,
            ``queue_oldest_age``, ``queue_depth``).
        queues: the queue names, or a callable returning them at each sample.
        interval_s: seconds between samples.
        timeout_s: bound on every broker call.
        dead_letters: returns how many dead letters are kept (``celery_dlq_entries``).
        reader: the broker reader; a :class:`DepthReader` over ``app``'s broker if omitted.
    """

    def __init__(
        self,
        app: Celery,
        metrics: KitMetrics,
        *,
        queues: Iterable[str] | Callable[[], Iterable[str]],
        interval_s: float,
        timeout_s: float = 5.0,
        dead_letters: Callable[[], int] | None = None,
        reader: DepthReader | None = None,
    ) -> None:
        self._dead_letters = dead_letters
        self._app = app
        self._metrics = metrics
        self._queues = queues
        self._interval_s = interval_s
        self._reader = reader if reader is not None else DepthReader(app, timeout_s=timeout_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def sample_once(self) -> dict[str, QueueDepth]:
        """Ask the broker once and set the gauges; errors are logged, not raised."""
        names = list(self._queues() if callable(self._queues) else self._queues)
        try:
            depths = self._reader.read(names, oldest=True)
        except Exception as exc:
            if not self._failing:
                logger.warning("celery_kit metrics: queue lengths unavailable: %r", exc)
            self._failing = True
            return {}
        self._sample_dead_letters()
        if self._failing:
            logger.info("celery_kit metrics: queue lengths available again")
        self._failing = False
        m = self._metrics
        for name, depth in depths.items():
            if depth.messages is not None:
                m.child(m.queue_length, name).set(depth.messages)
            if depth.oldest_age_s is not None or depth.messages == 0:
                m.child(m.queue_oldest_age, name).set(depth.oldest_age_s or 0.0)
            if depth.messages is not None:
                m.child(m.queue_depth, name, "ready").set(depth.messages)
            if depth.delayed is not None:
                m.child(m.queue_depth, name, "delayed").set(depth.delayed)
            for priority, messages in self._by_priority(name, depth.by_step).items():
                m.child(m.queue_length_by_priority, name, str(priority)).set(messages)
        return depths

    def _by_priority(self, queue: str, by_step: tuple[tuple[int, int], ...]) -> dict[int, int]:
        """Redis list step → kit priority (list ``q`` holds the most urgent, 9)."""
        if not by_step:  # RabbitMQ: one count per queue, no split
            return {}
        table = priority_map(self._app)
        out: dict[int, int] = {}
        for step, messages in by_step:
            level = table.to_kit(queue, step)
            if level is not None:
                out[level] = out.get(level, 0) + messages
        return out

    def _sample_dead_letters(self) -> None:
        if self._dead_letters is None:
            return
        try:
            count = self._dead_letters()
        except Exception as exc:  # Redis away: the gauge keeps its last value
            logger.debug("celery_kit metrics: dead-letter count unavailable: %r", exc)
            return
        m = self._metrics
        # only the static labels (metrics.labels); none: the gauge itself
        gauge = m.child(m.dlq_entries) if m.dlq_entries._labelnames else m.dlq_entries
        gauge.set(count)

    def start(self) -> None:
        """Sample every ``interval_s`` from a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="celery-kit-queues", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and close the broker connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._reader.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:  # a bug in a gauge update must not end the sampling thread
                logger.exception("celery_kit metrics: queue-length sample failed")
            self._stop.wait(self._interval_s)
