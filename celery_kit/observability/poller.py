"""The queue-length poller: samples every priority sub-queue into the kit's gauges."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from celery_kit.observability.depth import DepthReader

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
        metrics: whose ``queue_length``/``queue_oldest_age`` gauges to set.
        queues: the queue names, or a callable returning them at each sample.
        interval_s: seconds between samples.
        timeout_s: bound on every broker call.
        dead_letters: returns how many dead letters are kept (``celery_dlq_entries``).
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
    ) -> None:
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._queues = queues
        self._interval_s = interval_s
        self._reader = DepthReader(app, timeout_s=timeout_s)
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
        return depths

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
            self.sample_once()
            self._stop.wait(self._interval_s)
