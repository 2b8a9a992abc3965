"""``KitScheduler``: RedBeat with a non-blocking leader lease, reconciliation and aligned slots.

``make_app`` sets ``beat_scheduler`` to this class when ``[beat]`` is active, so
``celery -A proj beat`` and ``celery -A proj kit beat`` both run it. Changes to RedBeat
(celery-redbeat 2.4, ``redbeat/schedulers.py``), each for a failure it prevents:

* leadership is renewed at every loop in one round trip and never blocks
  (:mod:`.leader`); any Redis error means "do not send" and the loop keeps running, so
  every replica recovers from a Redis restart without being restarted;
* the schedule is reconciled with the config by the leader (at start, and whenever
  Redis lost it), with the diff logged (:mod:`.reconcile`);
* ``every_s`` runs are aligned to multiples of the interval since the epoch, and a run
  records the slot it stands for (``last_run_at``, header ``kit_beat_slot``): after
  downtime an entry runs once, not once per missed interval (:mod:`.entry`);
* a run is recorded (``reserve``) by a script that first checks the lease token, before it
  is sent: a replica that stalled past its lease cannot record, so it does not send, and a
  new leader sees every slot the old one recorded as done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import timedelta
from typing import Any

from celery.beat import SchedulingError
from redbeat.schedulers import RedBeatScheduler, get_redis

from celery_kit.beat.codec import KitJSONEncoder, encode_definition
from celery_kit.beat.entry import KitEntry, every_s_of, slot_of, utc
from celery_kit.beat.leader import Leadership
from celery_kit.beat.reconcile import reconcile
from celery_kit.config.schedules import SLOT_HEADER
from celery_kit.observability.beat import BeatMetrics, BeatPulse
from celery_kit.observability.server import MetricsServer
from celery_kit.state import settings_of

__all__ = ["KitScheduler"]

logger = logging.getLogger("celery.beat")


class KitScheduler(RedBeatScheduler):  # type: ignore[misc]
    """RedBeat configured by the kit (see the module docstring)."""

    Entry = KitEntry

    def __init__(self, app: Any, lock_key: str | None = None, **kwargs: Any) -> None:
        self._settings = settings_of(app)
        self._leadership: Leadership | None = None
        self._leader = False
        self._pulse = BeatPulse(self._settings)
        self._metrics: BeatMetrics | None = None
        self._server: Any = None
        super().__init__(app, lock_key=lock_key, **kwargs)
        # RedBeat's own lock (blocking beat_init receiver, renewal in tick) stays unused:
        # its receiver and tick skip everything when lock_key is empty.
        self.kit_lock_key: str = self.lock_key or app.redbeat_conf.lock_key
        self.lock_key: str | None = None

    # -- set-up --------------------------------------------------------------------------

    def setup_schedule(self) -> None:
        """Nothing at construction: the leader reconciles at its first loop (a standby
        must not rewrite the schedule a running leader with another config sends)."""

    def _wanted(self) -> dict[str, Any]:
        data = dict(self.app.conf.beat_schedule or {})
        backend = self.app.backend
        if self.app.conf.result_expires and not backend.supports_autoexpire:
            data.setdefault(
                "celery.backend_cleanup",
                {"task": "celery.backend_cleanup", "schedule": timedelta(hours=24)},
            )
        return {name: self._maybe_entry(name, spec) for name, spec in data.items()}

    def _lease(self) -> Leadership:
        if self._leadership is None:
            wanted = self._wanted()
            text = json.dumps({n: encode_definition(e) for n, e in sorted(wanted.items())})
            self._leadership = Leadership(
                get_redis(self.app),
                lock_key=self.kit_lock_key,
                marker_key=f"{self.app.redbeat_conf.key_prefix}:reconciled",
                timeout_s=float(self.lock_timeout),
                digest=hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest(),
            )
        return self._leadership

    def _reconcile(self) -> None:
        conf = self.app.redbeat_conf

        def save(entry: Any, fresh: bool) -> None:
            if fresh:
                now = time.time()
                last = utc(slot_of(entry.schedule, now)) if every_s_of(entry.schedule) else None
                entry.last_run_at = last or entry.default_now()
                entry.save()
                entry.reschedule(entry.last_run_at)  # overwrite any older meta
            else:
                meta = self.Entry.load_meta(entry.key, app=self.app)
                entry.last_run_at = meta.get("last_run_at") or entry.default_now()
                entry.save()

        diff = reconcile(
            get_redis(self.app),
            schedule_key=conf.schedule_key,
            key_of=lambda name: self.Entry.generate_key(self.app, name),
            wanted=self._wanted(),
            encode=encode_definition,
            save=save,
        )
        logger.info("beat: schedule reconciled with the config: %s", diff.describe())

    def _observe(self) -> None:
        if self._metrics is not None or not self._settings.metrics.enabled:
            return
        self._metrics = BeatMetrics(self._settings, last_runs=self._last_runs)
        conf = self._settings
        self._server = MetricsServer(
            self._metrics.render, address=conf.metrics.address, port=conf.beat.metrics_port
        )
        self._pulse.metrics_port = self._server.start()
        where = f"{conf.metrics.address}:{self._pulse.metrics_port}"
        logger.info("beat: metrics on %s/metrics", where)

    def _last_runs(self) -> dict[str, tuple[str, float | None]]:
        entries = self._settings.beat.schedule
        client = get_redis(self.app)
        with client.pipeline(transaction=False) as pipe:
            for name in entries:
                pipe.hget(self.Entry.generate_key(self.app, name), "meta")
            metas = pipe.execute()
        out: dict[str, tuple[str, float | None]] = {}
        for (name, spec), raw in zip(entries.items(), metas, strict=True):
            last = self.Entry.decode_meta(raw).get("last_run_at")
            out[name] = (spec.task, last.timestamp() if last is not None else None)
        return out

    # -- the loop -------------------------------------------------------------------------

    def tick(self, min: Any = min, **kwargs: Any) -> float:
        """One loop: renew or take the lease, reconcile if needed, send what is due."""
        try:
            self._observe()
        except Exception:
            logger.exception("beat: metrics not started")
        try:
            interval, reason = self._tick()
        except Exception as exc:  # Redis or broker trouble: stay alive, try next loop
            logger.warning("beat: loop failed (%s: %s); retrying", type(exc).__name__, exc)
            interval, reason = min(self.max_interval, 1.0), f"loop failed: {exc!r}"
        if self._metrics is not None:
            self._metrics.set_leader(self._leader)
        self._pulse.write(leader=self._leader, reason=reason)
        return float(interval)

    def _tick(self) -> tuple[float, str]:
        lease = self._lease().hold()
        if lease.leader != self._leader:
            if lease.leader:
                logger.info("beat: this replica is now the leader (sends due entries)")
            else:
                logger.warning("beat: no longer the leader (%s)", lease.error or "lock taken")
        self._leader = lease.leader
        if not lease.leader:
            return self.max_interval, lease.error or "standby: another replica leads"
        if lease.needs_reconcile:
            self._reconcile()
            self._lease().mark_reconciled()
        remaining = []
        for entry in self.schedule.values():
            if not self._lease().valid():
                break
            next_s = self.maybe_due(entry, **self._maybe_due_kwargs)
            if next_s:
                remaining.append(next_s)
        return min([*remaining, self.max_interval]), "leader"

    def reserve(self, entry: Any) -> Any:
        """Advance ``entry`` past this run in Redis, only while this replica leads."""
        new = next(entry)
        meta = {"last_run_at": new.last_run_at, "total_run_count": new.total_run_count}
        recorded = self._lease().record_run(
            key=new.key,
            schedule_key=self.app.redbeat_conf.schedule_key,
            meta=json.dumps(meta, cls=KitJSONEncoder),
            score=new.score,
        )
        if not recorded:
            self._leader = False
            raise SchedulingError(f"not sent {entry.name!r}: the leader lease was lost")
        return new

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kw: Any) -> Any:
        """Send ``entry`` with its slot header and default expiry, only while leading."""
        if not self._lease().valid():
            raise SchedulingError(f"not sent {entry.name!r}: the leader lease ran out")
        now = time.time()
        options = dict(entry.options or {})
        slot = slot_of(entry.schedule, now)
        options["headers"] = {**(options.get("headers") or {}), SLOT_HEADER: slot}
        if "expires" not in options:  # default: the interval, so missed runs do not pile up
            every = every_s_of(entry.schedule)
            if every is None:
                every = entry.schedule.remaining_estimate(entry.default_now()).total_seconds()
            options["expires"] = max(float(every), 1.0)
        stored, entry.options = entry.options, options  # for this send only
        try:
            result = super().apply_async(entry, producer=producer, advance=advance, **kw)
        finally:
            entry.options = stored
        if self._metrics is not None:
            self._metrics.sent_one(str(entry.name), str(entry.task))
        return result

    def close(self) -> None:
        """Release the lease (a standby takes over at once), stop metrics, drop the file."""
        if self._leadership is not None and self._leader:
            self._leadership.release()
        if self._server is not None:
            self._server.stop()
        self._pulse.remove()
        super().close()

    @property
    def info(self) -> str:
        """Shown in beat's start-up banner."""
        return (
            f"       . redis -> {self.app.redbeat_conf.redis_url.split('@')[-1]}\n"
            f"       . leader lock -> `{self.kit_lock_key}` ({self.lock_timeout:g} s)"
        )
