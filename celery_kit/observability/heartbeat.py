"""The heartbeat writer: a consumer bootstep that proves, from the event loop, that it consumes.

Every ``health.interval_s`` the worker's main process checks that its consumer runs on a
live broker connection and is not stuck: if messages wait in its queues while it has free
slots and received nothing since the last check, it is not consuming (the "ghost worker
after a reconnect", celery#8082 family). Only a passing check advances ``consuming_at``;
a frozen, blocked or disconnected worker stops writing altogether.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from celery import bootsteps
from redis.backoff import NoBackoff
from redis.retry import Retry

from celery_kit.coordination.client import redis_url
from celery_kit.coordination.keys import keys_of
from celery_kit.exceptions import ConfigError
from celery_kit.observability.depth import DepthReader
from celery_kit.observability.heartbeat_file import (
    HEARTBEAT_VERSION,
    default_heartbeat_file,
    expand_heartbeat_path,
)
from celery_kit.state import settings_of

if TYPE_CHECKING:
    from celery_kit.config.operations import HealthSettings
    from celery_kit.config.settings import Settings

__all__ = ["Heartbeat", "Verdict", "assess", "heartbeat_redis", "install_health"]

logger = logging.getLogger(__name__)

_NOT_RUNNING = "consumer not running (starting, or reconnecting to the broker)"


def install_health(app: Any, settings: Settings) -> None:
    """Add the heartbeat to ``app``'s workers (if ``health.enabled``)."""
    if settings.health.enabled:
        app.steps["consumer"].add(Heartbeat)


def heartbeat_redis(url: str, timeout_s: float) -> redis.Redis:
    """A client that gives up within ``timeout_s`` (no retries: it runs in the event loop)."""
    # no retries: this runs in the event loop and must give up within its timeout
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
    )


@dataclass(frozen=True)
class Verdict:
    """One heartbeat check: what the probes will read."""

    #: The consumer runs on a broker connection (readiness).
    ready: bool
    #: The worker proved it consumes, or has nothing it could consume (liveness).
    proof: bool
    #: The broker answered during this check.
    broker_ok: bool
    #: Messages wait, slots are free, nothing arrives: the ghost-worker symptom.
    stuck: bool = False
    reason: str = ""


def assess(
    *,
    running: bool,
    connected: bool,
    received: bool,
    waiting: Callable[[], dict[str, int]],
    reserved: int,
    limit: int,
    interval_s: float,
) -> Verdict:
    """Decide one check (pure, so every branch is unit-tested).

    Args:
        running: the consumer blueprint runs and has a task consumer.
        connected: its broker connection says it is connected.
        received: a task message arrived since the previous check.
        waiting: asks the broker how many messages wait per consumed queue (may raise).
        reserved: task messages the worker holds (running or prefetched).
        limit: the prefetch limit (``0``: unlimited).
        interval_s: seconds between checks (for the message).
    """
    if not running:
        return Verdict(False, False, False, reason=_NOT_RUNNING)
    if not connected:
        return Verdict(False, False, False, reason="broker connection lost")
    if received:
        return Verdict(True, True, True)
    try:
        depths = {name: n for name, n in waiting().items() if n}
    except Exception as exc:
        return Verdict(True, False, False, reason=f"broker round trip failed: {exc!r}")
    if depths and (limit == 0 or reserved < limit):
        return Verdict(
            True,
            False,
            True,
            stuck=True,
            reason=(
                f"not consuming: {sum(depths.values())} message(s) wait in"
                f" {', '.join(sorted(depths))} while {reserved} of {limit or 'unlimited'}"
                f" slots are taken, and nothing was received for {interval_s:g} s"
            ),
        )
    return Verdict(True, True, True)


class Heartbeat(bootsteps.StartStopStep):
    """Consumer bootstep writing the heartbeat file (and Redis key) the probes read."""

    label = "celery_kit heartbeat"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.settings: Settings = settings_of(c.app)
        conf: HealthSettings = self.settings.health
        self.conf = conf
        template = conf.heartbeat_file or default_heartbeat_file()
        self.app_name = str(c.app.main or "")
        self.path = Path(expand_heartbeat_path(template, str(c.hostname), self.app_name))
        self.hostname = str(c.hostname)
        self.started_at = time.time()
        #: A starting worker gets ``max_age_s`` to prove it consumes (a probe grace period).
        self.consuming_at: float | None = self.started_at
        self.broker_ok_at: float | None = None
        self.reason = "starting"
        self._tref: Any = None
        self._last_received: int | None = None
        self._reader: DepthReader | None = None
        self._redis: redis.Redis | None = None
        self._redis_key: str | None = None
        self._stuck_logged = False
        self._warn_if_shared()
        # The file exists from worker init (not ready, inside the start-up grace): a probe
        # between now and the consumer's start must not fail for want of a file.
        try:
            self._write(c, self.started_at, ready=False)
        except OSError as exc:
            logger.warning("celery_kit heartbeat: cannot write %s: %s", self.path, exc)

    # lifecycle (the consumer stops and restarts its steps on every broker reconnect) ------

    def start(self, c: Any) -> None:
        self._cancel()
        self._tref = c.timer.call_repeatedly(self.conf.interval_s, self.tick, (c,))
        self.tick(c)  # the file exists from the start (ready once the consumer runs)

    def stop(self, c: Any) -> None:
        self._cancel()

    def shutdown(self, c: Any) -> None:
        self._cancel()
        self.path.unlink(missing_ok=True)
        if self._redis is not None and self._redis_key is not None:
            with contextlib.suppress(Exception):  # Redis away: the key expires on its own
                self._redis.delete(self._redis_key)
            self._redis.close()
        if self._reader is not None:
            self._reader.close()

    def _cancel(self) -> None:
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None

    # the check ------------------------------------------------------------------------------

    def tick(self, c: Any) -> None:
        """Check consumption, write the heartbeat; never raises (it runs in the event loop)."""
        try:
            now = time.time()
            ready, proof = self.check(c, now)
            if proof:
                self.consuming_at = now
            self._write(c, now, ready)
        except Exception:
            logger.exception("celery_kit heartbeat: tick failed")

    def check(self, c: Any, now: float) -> tuple[bool, bool]:
        """``(ready, proof)``: consumer running on a connection; consuming proven now."""
        # deferred: the worker's machinery, loaded only where a worker runs this
        from celery.bootsteps import RUN  # type: ignore[attr-defined]
        from celery.worker import state

        received = int(state.all_total_count[0]) + len(state.requests)
        got_new = self._last_received is not None and received != self._last_received
        self._last_received = received
        conn = getattr(c, "connection", None)
        running = c.blueprint.state == RUN and conn is not None and c.task_consumer is not None
        qos = getattr(c, "qos", None)

        def waiting() -> dict[str, int]:
            queues = [q.name for q in c.task_consumer.queues if q.exchange.type != "fanout"]
            if self._reader is None:
                self._reader = DepthReader(c.app, timeout_s=self.conf.broker_timeout_s)
            return {n: d.messages or 0 for n, d in self._reader.read(queues).items()}

        verdict = assess(
            running=running,
            connected=running and conn is not None and bool(conn.connected),
            received=got_new,
            waiting=waiting,
            reserved=len(state.reserved_requests),
            limit=int(qos.value) if qos is not None else 0,
            interval_s=self.conf.interval_s,
        )
        self.reason = verdict.reason
        if verdict.broker_ok:
            self.broker_ok_at = now
        if not verdict.stuck:
            self._stuck_logged = False
        elif not self._stuck_logged and now - self.started_at > self.conf.max_age_s:
            # Inside the start-up grace a worker that has not taken its first message yet
            # is not stuck (the probes pass then too): warn only when it means something.
            logger.warning("celery_kit heartbeat: %s", verdict.reason)
            self._stuck_logged = True
        return verdict.ready, verdict.proof

    def _write(self, c: Any, now: float, ready: bool) -> None:
        conn = getattr(c, "connection", None)
        address = None
        if conn is not None and conn.hostname:
            address = [conn.hostname, int(conn.port or conn.transport.default_port)]
        consumer = getattr(c, "task_consumer", None)
        beat = {
            "version": HEARTBEAT_VERSION,
            "app": self.app_name,
            "hostname": self.hostname,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "written_at": now,
            "consuming_at": self.consuming_at,
            "broker_ok_at": self.broker_ok_at,
            "ready": ready,
            "reason": self.reason,
            "interval_s": self.conf.interval_s,
            "max_age_s": self.conf.max_age_s,
            "broker_address": address,
            "queues": sorted(q.name for q in consumer.queues) if consumer is not None else [],
        }
        data = json.dumps(beat)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(data)
        os.replace(tmp, self.path)
        if self.conf.redis_key and self.consuming_at == now:
            self._write_key(data)

    def _write_key(self, data: str) -> None:
        if self._redis_key is None:
            try:
                url = redis_url(self.settings)
            except ConfigError:
                self.conf = self.conf.model_copy(update={"redis_key": False})
                return
            self._redis = heartbeat_redis(url, self.conf.broker_timeout_s)
            self._redis_key = keys_of(self.settings).worker_heartbeat(self.hostname)
        assert self._redis is not None
        try:
            self._redis.set(self._redis_key, data, ex=math.ceil(self.conf.max_age_s))
        except Exception as exc:
            logger.debug("celery_kit heartbeat: Redis key not written: %r", exc)

    def _warn_if_shared(self) -> None:
        try:
            beat = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        pid = beat.get("pid")
        fresh = time.time() - float(beat.get("written_at") or 0) < self.conf.max_age_s
        if fresh and beat.get("hostname") != self.hostname and isinstance(pid, int):
            logger.warning(
                "celery_kit heartbeat: %s is also written by worker %s (pid %s); give each"
                " worker its own file: health.heartbeat_file = '…/%%n.heartbeat.json'",
                self.path,
                beat.get("hostname"),
                pid,
            )
