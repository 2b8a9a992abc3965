"""Poison messages: cap how often a task may kill its pool process, or its whole worker.

With ``acks_late`` + ``reject_on_worker_lost`` (kit defaults) Celery requeues a task
whose pool process died (OOM kill, segfault, ``os._exit``), with no limit: a task that
always kills its process loops forever. ``KitRequest`` (the ``Request`` class of every
``KitTask``, Celery's sanctioned per-task hook, run in the worker's main process) counts
those deaths per task id in Redis, and at ``dlq.max_worker_lost_deliveries`` dead-letters
the task and stores it as FAILURE (:class:`PoisonMessageError`) instead of requeueing it.
It also dead-letters ``dead_letter`` tasks killed by their hard time limit.

A task that kills the *whole* worker (main process too) is seen by nobody at its death.
The broker then redelivers it flagged ``redelivered``; for such a delivery the pool
process sets a "running" mark on Redis before the body starts (:func:`mark_running`) and
the main process clears it when the task is acknowledged. A mark still present at the
next redelivery means that delivery died while running: the consumer guard
(:mod:`celery_kit.tasks.consumer_guard`) counts it (:func:`deaths_on_redelivery`) and past the
cap dead-letters the message (``worker_lost``) before it runs again. Messages that were
only prefetched when a worker died (or a broker restarted) never started, carry no mark
and are not counted. A first delivery is not marked (that would cost every task a round
trip), so a message that kills the whole worker runs at most ``cap + 1`` times.

Costs nothing while tasks succeed: round trips only when a pool process died or for a
redelivered message.

What happens when things die / are away: Redis unreachable when counting or marking:
logged, and Celery's own behaviour applies (requeue / run).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback  # type: ignore[attr-defined]
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery.worker.request import Request

from celery_kit.coordination.client import kit_redis
from celery_kit.coordination.dead_letter import dead_letter_from
from celery_kit.coordination.dlq import DeadLetterStore
from celery_kit.exceptions import PoisonMessageError
from celery_kit.state import find_state, settings_of
from celery_kit.topology.priority import delivered_priority

if TYPE_CHECKING:
    from celery import Celery, Task

__all__ = ["KitRequest", "deaths_on_redelivery", "mark_running"]

logger = logging.getLogger(__name__)

# KEYS[1] running mark, KEYS[2] death count; ARGV ttl_ms -> the new count
_COUNT = """
redis.call('DEL', KEYS[1])
local n = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return n
"""
# Same keys: count a death only if the last delivery was still marked running.
_DIED_RUNNING = """
if redis.call('DEL', KEYS[1]) == 1 then
  local n = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  return n
end
return tonumber(redis.call('GET', KEYS[2]) or '0')
"""


def _cap_and_ttl_ms(app: Celery) -> tuple[int | None, int]:
    dlq = settings_of(app).dlq
    return dlq.max_worker_lost_deliveries, dlq.worker_lost_ttl_s * 1000


def mark_running(task: Task[Any, Any]) -> None:
    """Pool process, before the body of a *redelivered* task: mark it running."""
    cap, ttl_ms = _cap_and_ttl_ms(task.app)
    if cap is None:
        return
    try:
        kr = kit_redis(task.app)
        kr.client.set(kr.keys.worker_running(str(task.request.id)), 1, px=ttl_ms)
    except Exception as err:
        logger.warning("celery_kit: could not mark %s running (%s)", task.request.id, err)


def deaths_on_redelivery(app: Celery, task_id: str) -> int:
    """Main process, at a redelivery: the deaths so far, counting the last delivery if it
    died while running (its mark is still there). Raises on Redis errors."""
    kr = kit_redis(app)
    keys = [kr.keys.worker_running(task_id), kr.keys.worker_lost(task_id)]
    return int(kr.run(_DIED_RUNNING, keys, [_cap_and_ttl_ms(app)[1]]))


class KitRequest(Request):
    """Celery's worker request, plus the poison-message cap (see the module)."""

    def acknowledge(self) -> None:
        super().acknowledge()
        if (self.delivery_info or {}).get("redelivered"):
            try:  # it finished (or was acked early): not running any more
                kr = kit_redis(self.task.app)
                kr.client.delete(kr.keys.worker_running(str(self.id)))
            except Exception as err:
                logger.warning("celery_kit: could not unmark %s (%s)", self.id, err)

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

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft:  # the pool process is being killed (tracing exports a stand-in span)
            state = find_state(self.task.app)
            for hook in state.hard_timeout_hooks if state is not None else ():
                try:
                    hook(self, timeout)
                except Exception:  # an observer never breaks Celery's own handling
                    logger.exception("celery_kit: a hard-timeout hook failed for %s", self.id)
        super().on_timeout(soft, timeout)

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
            keys = [kr.keys.worker_running(str(self.id)), kr.keys.worker_lost(str(self.id))]
            count = int(kr.run(_COUNT, keys, [settings.dlq.worker_lost_ttl_s * 1000]))
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
