"""Record an idempotent run's success without waiting for Redis's reply.

The completion script is written to the process's pinned kit connection
(:class:`~celery_kit.coordination.pinned.ScriptConn`) and the task returns at once; the
reply is read by the next kit call of this process (the next task's claim, which then
waits once for both replies) or, if none comes first, by the lease thread
``SETTLE_AFTER_S`` (0.2 s) later, or when the pool process exits. Until the reply is read
the completion stays queued on the connection and the lease thread keeps reading it; a
lost connection or a Redis restart makes it go out again (the script is safe to resend:
a second run with the same token answers "recorded"), for up to
``max(lease, COMPLETE_RETRY_S)``. Nothing is dropped without an error in the log.

The claim's own lease is no longer renewed once the body returned: it was renewed every
third of the lease, so at least two thirds are left when the completion is written, and
the completion (or its resend) replaces it. A renewal could not get through when the
completion cannot: both go to the same server.

A thread or green pool whose pinned connection is busy with another task records the
completion synchronously instead (``KitRedis.send`` returns False).

What changes against waiting for the reply: the task reports success (and its message is
acked) before Redis confirmed the completion. If the pool process is SIGKILLed in
between, the completion is already on the wire (Redis runs it when it reads it); if the
connection is lost at that very moment, the claim expires after its lease, as when Redis
is unreachable at completion, and a later duplicate could run the body again.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import redis
from celery import signals

from celery_kit.coordination.client import KitRedis
from celery_kit.coordination.idempotency import Claim
from celery_kit.coordination.pinned import Sent
from celery_kit.state import state_of

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "COMPLETE_RETRY_S",
    "connect_completion_flush",
    "flush_completions",
    "record_success",
]

logger = logging.getLogger(__name__)

#: A completion Redis did not confirm is sent again for at least this long.
COMPLETE_RETRY_S = 60.0


def record_success(
    kr: KitRedis,
    claim: Claim,
    result: Any,
    *,
    lease_s: float,
    ttl_s: float,
    task_id: str,
    what: str,
) -> None:
    """Record ``result`` for ``claim``: sent without waiting when ``kr`` is pinned."""
    if kr.pinned is None:
        _record_now(claim, result, ttl_s=ttl_s, task_id=task_id, what=what)
        return
    sent = claim.completion(result, result_ttl_s=ttl_s, task_id=task_id)
    sent.give_up_at = time.monotonic() + max(lease_s, COMPLETE_RETRY_S)
    key = claim.key

    def on_reply(done: Sent) -> None:  # whichever thread read it
        if done.error is not None:
            _log_unrecorded(what, key, done.error)
        elif not done.value:
            _log_lost(what, key)

    sent.on_done = on_reply
    try:
        if not kr.send(sent):  # another thread (thread or green pool) is using it: wait
            _record_now(claim, result, ttl_s=ttl_s, task_id=task_id, what=what)
    except redis.RedisError as exc:  # still queued: sent again by the next call or the thread
        logger.warning(
            "celery_kit: %s: could not send the completion of %s yet (%s); retrying",
            what,
            key,
            exc,
        )


def _record_now(claim: Claim, result: Any, *, ttl_s: float, task_id: str, what: str) -> None:
    try:
        recorded = claim.complete(result, result_ttl_s=ttl_s, task_id=task_id)
    except redis.RedisError as exc:
        _log_unrecorded(what, claim.key, exc)
        return
    if not recorded:
        _log_lost(what, claim.key)


def _log_unrecorded(what: str, key: str, why: object) -> None:
    logger.error(
        "celery_kit: %s succeeded but %s could not be recorded (%s): a later duplicate may"
        " run the body again once the lease expires",
        what,
        key,
        why,
    )


def _log_lost(what: str, key: str) -> None:
    logger.warning(
        "celery_kit: %s: the claim on %s was lost while the body ran (lease expired);"
        " another run holds it now, so this result was not recorded",
        what,
        key,
    )


def flush_completions(app: Celery) -> None:
    """Process exit: read the replies of completions still unread (sending them again if
    the connection was lost), so none is left unconfirmed. Errors are logged."""
    kr = state_of(app).get(KitRedis)
    if kr is None or kr.pid != os.getpid() or kr.pinned is None or not kr.pinned.pending():
        return
    try:
        kr.pinned.settle()
    except redis.RedisError as exc:
        logger.error(
            "celery_kit: %d idempotency completion(s) could not be confirmed before exit"
            " (%s): a later duplicate may run their body again once the lease expires",
            kr.pinned.pending(),
            exc,
        )


def connect_completion_flush(app: Celery) -> bool:
    """Worker start: flush unread completions when a pool process (or a solo worker) exits,
    if any task of ``app`` has an idempotency key. Returns whether it connected."""
    app.finalize(auto=True)
    if not any(
        getattr(getattr(task, "_kit_plan", None), "idempotency", None) is not None
        for task in app.tasks.values()
    ):
        return False

    def flush(**_: Any) -> None:
        flush_completions(app)

    uid = f"celery_kit.completions.{id(app)}"
    signals.worker_process_shutdown.connect(flush, weak=False, dispatch_uid=uid + ":child")
    signals.worker_shutdown.connect(flush, weak=False, dispatch_uid=uid + ":worker")
    return True
