"""Beat's liveness file and metrics, and the workers' count of skipped periodic runs.

The beat process is a single process (``celery_kit.beat``). Its heartbeat has the worker
heartbeat's format (:mod:`celery_kit.observability.probes` reads it), with
``consuming_at`` meaning "the beat loop ran" and two more fields, ``role = "beat"`` and
``leader``. Metrics live in a private registry served by the beat process itself on
``beat.metrics_port`` (no multiprocess directory: beat does not fork). Skipped runs
(``tasks.overlap``) happen in worker pool processes and are counted there, into the
worker's multiprocess metrics, through a ``KitState`` hook.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery_kit.observability.heartbeat_file import HEARTBEAT_VERSION, default_beat_heartbeat_file
from celery_kit.observability.metrics import metrics_state
from celery_kit.state import state_of

if TYPE_CHECKING:
    from celery import Celery
    from prometheus_client import CollectorRegistry

    from celery_kit.config.settings import Settings

__all__ = ["BeatMetrics", "BeatPulse", "install_skip_counter"]

logger = logging.getLogger(__name__)


class BeatPulse:
    """Writes the beat heartbeat file after every loop (atomic replace)."""

    def __init__(self, settings: Settings) -> None:
        conf = settings.beat
        self.path = Path(conf.heartbeat_file or default_beat_heartbeat_file())
        self.hostname = f"beat@{socket.gethostname()}"
        self.started_at = time.time()
        self.max_age_s = conf.max_age_s
        self.interval_s = conf.max_loop_interval_s
        self.metrics_port: int | None = None

    def write(self, *, leader: bool, reason: str) -> None:
        """Record one loop; never raises (it runs in the beat loop)."""
        now = time.time()
        beat = {
            "version": HEARTBEAT_VERSION,
            "role": "beat",
            "hostname": self.hostname,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "written_at": now,
            "consuming_at": now,
            "ready": True,
            "leader": leader,
            "reason": reason,
            "interval_s": self.interval_s,
            "max_age_s": self.max_age_s,
            "metrics_port": self.metrics_port,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(beat))
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.warning("beat: heartbeat %s not written (%s)", self.path, exc)

    def remove(self) -> None:
        """Delete the file at shutdown."""
        self.path.unlink(missing_ok=True)


class BeatMetrics:
    """Beat's metrics in their own registry.

    Args:
        settings: the app's settings (metric prefix and static labels).
        last_runs: called at scrape time; returns entry name -> (task name, epoch of the
            last run's slot or ``None``), read from Redis, so a standby reports it too.
        registry: where to register; a fresh one if omitted.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        last_runs: Callable[[], Mapping[str, tuple[str, float | None]]],
        registry: CollectorRegistry | None = None,
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        conf = settings.metrics
        self.registry = registry if registry is not None else CollectorRegistry()
        p, r = conf.prefix, self.registry
        self._static = tuple(conf.labels.values())
        static = tuple(conf.labels)
        self.sent = Counter(
            f"{p}_beat_runs_sent_total",
            "Periodic runs this beat process sent, by schedule entry.",
            ("entry", "name", *static),
            registry=r,
        )
        self.leader = Gauge(
            f"{p}_beat_leader",
            "1 while this beat process holds the leader lock (the one that sends).",
            ("hostname", *static),
            registry=r,
        )
        self._hostname = socket.gethostname()
        self._last_runs = last_runs
        self._static_names = static
        self._prefix = p
        r.register(self)  # a custom collector: collect() below

    def sent_one(self, entry: str, task: str) -> None:
        """Count one run sent."""
        self.sent.labels(entry, task, *self._static).inc()

    def set_leader(self, leader: bool) -> None:
        """Record whether this process leads."""
        self.leader.labels(self._hostname, *self._static).set(1 if leader else 0)

    def collect(self) -> Iterable[Any]:
        """``<prefix>_beat_seconds_since_last_send{entry,name}``, read at scrape time."""
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            f"{self._prefix}_beat_seconds_since_last_send",
            "Seconds since the slot of the entry's last run (from Redis; every replica).",
            labels=("entry", "name", *self._static_names),
        )
        try:
            runs = self._last_runs()
        except Exception as exc:  # Redis away: report nothing rather than stale values
            logger.debug("beat: last runs not read for metrics (%r)", exc)
            runs = {}
        now = time.time()
        for entry, (task, at) in sorted(runs.items()):
            if at is not None:
                family.add_metric([entry, task, *self._static], max(0.0, now - at))
        yield family

    def render(self, accept: str) -> tuple[bytes, str]:
        """``(body, content type)`` for the metrics server."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


@dataclass
class _SkipCounter:
    """This process's ``<prefix>_beat_overlap_skipped_total`` (a ``KitState`` part)."""

    counter: Any
    static: tuple[str, ...]


def install_skip_counter(app: Celery, settings: Settings) -> None:
    """Count skipped periodic runs (``overlap = "skip"``) in the worker's metrics."""
    if not settings.metrics.enabled:
        return

    def count(entry: str, task: str) -> None:
        found = metrics_state(app)
        if found is None:
            return
        state = state_of(app)
        part = state.get(_SkipCounter)
        if part is None:
            from prometheus_client import Counter

            conf = found.settings
            counter = Counter(
                f"{conf.prefix}_beat_overlap_skipped_total",
                "Periodic runs skipped because the previous run of the entry still ran.",
                ("entry", "name", *conf.labels),
                registry=found.kit_metrics().registry,
            )
            part = state.put(_SkipCounter(counter, tuple(conf.labels.values())))
        part.counter.labels(entry, task, *part.static).inc()

    state_of(app).overlap_skip_hooks.append(count)
