"""Poison messages: cap how often a task may kill its pool process before it is parked.

With ``acks_late`` + ``reject_on_worker_lost`` (kit defaults) Celery requeues a task
whose pool process died (OOM kill, segfault, ``os._exit``), with no limit: a task that
always kills its process loops forever. ``KitRequest`` (the ``Request`` class of every
``KitTask``, Celery's sanctioned per-task hook, run in the worker's main process) counts
those deaths per task id in Redis, and at ``dlq.max_worker_lost_deliveries`` dead-letters
the task and stores it as FAILURE (:class:`PoisonMessageError`) instead of requeueing it.
It also dead-letters ``dead_letter`` tasks killed by their hard time limit.

Costs nothing while tasks succeed: one round trip only when a pool process died.

What happens when things die / are away:

* the whole worker (main process too) is SIGKILLed: the broker redelivers the message
  itself (visibility timeout / closed channel) and nobody observes the death, so such
  redeliveries are not counted; an OOM kill or crash usually takes only the pool process;
* Redis unreachable when counting: logged, and Celery's own behaviour applies (requeue).
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback  # type: ignore[attr-defined]
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery.worker.request import Request

from celery_kit.coordination.client import kit_redis
from celery_kit.coordination.dead_letter import dead_letter_from
from celery_kit.coordination.dlq import DeadLetterStore
from celery_kit.exceptions import PoisonMessageError
from celery_kit.state import settings_of
from celery_kit.topology.priority import delivered_priority

__all__ = ["KitRequest"]

logger = logging.getLogger(__name__)

# KEYS[1] counter; ARGV ttl_ms -> the new count
_COUNT = """
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
"""


class KitRequest(Request):
    """Celery's worker request, plus the poison-message cap (see the module)."""

    def on_failure(
        self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        try:
            exc_info = self._kit_failure(exc_info)
        except Exception:  # an observer never breaks Celery's own handling
            logger.exception("celery_kit: poison-message check failed for %s", self.id)
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )

    def _worker_lost(self, exc: BaseException) -> bool:
        if isinstance(exc, WorkerLostError):
            return True
        # billiard >= 4.3 reports the child's exit as SystemExit; Celery treats it as lost
        # unless it killed the child itself (revoke/terminate).
        return isinstance(exc, (SystemExit, KeyboardInterrupt)) and not (
            getattr(self, "_already_cancelled", False) or getattr(self, "_already_revoked", False)
        )

    def _kit_failure(self, exc_info: ExceptionInfo) -> ExceptionInfo:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if exc is None:
            return exc_info
        task = self.task
        if isinstance(exc, TimeLimitExceeded):
            settings = settings_of(task.app)
            if getattr(task, "dead_letter", False) and settings.dlq.enabled:
                self._store(exc, reason="time_limit", attempts=self._retries() + 1)
            return exc_info
        if not self._worker_lost(exc):
            return exc_info
        requeues = bool(task.acks_late) and bool(
            task.reject_on_worker_lost or getattr(task, "retry_on_worker_lost", False)
        )
        settings = settings_of(task.app)
        cap = settings.dlq.max_worker_lost_deliveries
        if not requeues or cap is None:
            return exc_info
        kr = kit_redis(task.app)
        try:
            count = int(
                kr.run(
                    _COUNT, [kr.keys.worker_lost(self.id)], [settings.dlq.worker_lost_ttl_s * 1000]
                )
            )
        except Exception as err:
            logger.warning("celery_kit: could not count worker loss of %s (%s)", self.id, err)
            return exc_info
        if count < cap:
            logger.warning(
                "celery_kit: %s[%s] lost its pool process (%d of %d allowed); requeued",
                self.task_name,
                self.id,
                count,
                cap,
            )
            return exc_info
        stored = getattr(self, "_success_was_stored", None)
        if callable(stored) and stored():
            return exc_info  # it succeeded before dying: let Celery ack it
        if settings.dlq.enabled:
            self._store(exc, reason="worker_lost", attempts=count)
        try:
            raise PoisonMessageError(
                f"{self.task_name}[{self.id}] killed its pool process {count} times"
                f" ({exc!s}); dead-lettered instead of requeued (dlq.max_worker_lost_deliveries"
                f" = {cap}). Fix the cause, then: celery -A <app> kit dlq replay {self.id}"
            ) from exc
        except PoisonMessageError:
            return ExceptionInfo()

    def _retries(self) -> int:
        return int((self.request_dict or {}).get("retries") or 0)

    def _store(self, exc: BaseException, *, reason: str, attempts: int) -> None:
        entry = dead_letter_from(
            exc,
            task_id=str(self.id),
            task_name=self.task_name,
            args=self.args,
            kwargs=self.kwargs,
            delivery_info=self.delivery_info,
            headers=self.request_dict,
            reason=reason,
            attempts=attempts,
            # the main process sees the broker's value (reversed on Redis): store the kit's
            priority=delivered_priority(self.task.app, self.delivery_info),
            hostname=self.hostname,
        )
        DeadLetterStore(self.task.app).add_or_log(entry)
