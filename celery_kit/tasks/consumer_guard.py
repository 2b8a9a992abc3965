"""Consumer bootstep: one broken message never stops a worker; what cannot run is dead-lettered.

:class:`EnvelopeGuard` wraps the consumer's task-message callback (``create_task_handler``,
the one entry point of every task message on both brokers) and its ``on_decode_error``
(kombu reports undecodable bodies and unknown compressions there). Per message, in the
worker's main process, before Celery sees it:

1. :func:`celery_kit.tasks.envelope.check_message`; a failing message is dead-lettered
   (``malformed``, what was wrong, the start of the payload), counted in
   ``*_task_rejected_total{reason="malformed"}`` (through Celery's ``task_rejected``
   signal, with a :class:`MalformedMessageError`) and acknowledged off the queue;
2. a *redelivered* message (RabbitMQ flags it after a closed channel or a requeue,
   kombu's Redis transport when it restores an unacknowledged message) whose previous
   delivery died while running (see :mod:`celery_kit.poison`) adds one to its death count
   on the kit's Redis; at ``dlq.max_worker_lost_deliveries`` deaths it is dead-lettered as
   ``worker_lost`` and stored FAILURE instead of killing the next worker too. First
   deliveries cost nothing here: no Redis round trip;
3. a task the worker does not know is dead-lettered (``not_registered``, replayable once
   deployed) and then handed to Celery, which stores FAILURE as before.

The step also makes the task channel refuse to inflate compressed bodies beyond the bound
(:mod:`celery_kit.tasks.compression`) and, on Redis, installs
:mod:`celery_kit.tasks.redis_guard` on it.

What happens when things die / are away: the dead letter is written before the ack, so a
crash in between shows the message again (at least once in the DLQ, never lost); Redis
unreachable: a malformed message is logged at ERROR with its entry and still acknowledged,
a redelivered one runs uncounted (logged). An exception this module did not foresee in
Celery's own handler is treated like a malformed message instead of stopping the worker.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import bootsteps
from celery.worker.consumer.tasks import Tasks

from celery_kit.coordination.dead_letter import MALFORMED, DeadLetter, dead_letter_from
from celery_kit.coordination.dlq import DeadLetterStore
from celery_kit.exceptions import MalformedMessageError, PoisonMessageError
from celery_kit.state import settings_of
from celery_kit.tasks.compression import guard_message_class
from celery_kit.tasks.envelope import Accepted, Policy, Problem, check_message, preview, preview_raw
from celery_kit.tasks.poison import deaths_on_redelivery
from celery_kit.topology.priority import delivered_priority

__all__ = ["EnvelopeGuard"]

logger = logging.getLogger(__name__)

_MALFORMED_TYPE = f"{MalformedMessageError.__module__}.{MalformedMessageError.__qualname__}"
#: Longest claimed task name kept in a malformed entry.
_NAME_MAX = 200


class EnvelopeGuard(bootsteps.StartStopStep):
    """Consumer bootstep installing :class:`_Guard` (see the module)."""

    requires = (Tasks,)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.guard = guard = _Guard(c)
        # read by Celery when the loop starts / the task consumer is built (after this)
        c.create_task_handler = guard.wrap_factory(c.create_task_handler)
        c.on_decode_error = guard.on_decode_error

    def start(self, c: Any) -> None:
        channel = getattr(c.task_consumer, "channel", None)
        if channel is None:
            return
        # a new channel after each reconnect: guard it again
        guard_message_class(channel, max_bytes=self.guard.max_bytes)
        if getattr(c.connection.transport, "driver_type", None) == "redis":
            from celery_kit.tasks.redis_guard import guard_channel

            guard_channel(channel, self.guard.on_raw_problem, max_bytes=self.guard.max_bytes)


class _Guard:
    """The checks and what follows them, for one worker consumer."""

    def __init__(self, consumer: Any) -> None:
        self.c = consumer
        self.app = app = consumer.app
        settings = settings_of(app)
        self.max_bytes = settings.tasks.max_message_bytes
        self.policy = Policy.of(app.conf.accept_content, max_bytes=self.max_bytes)
        self.cap = settings.dlq.max_worker_lost_deliveries
        self.dlq_enabled = settings.dlq.enabled
        self._store: DeadLetterStore | None = None

    # -- entry points ------------------------------------------------------------------

    def wrap_factory(self, create: Any) -> Any:
        """Wrap ``Consumer.create_task_handler`` (called each time the loop starts)."""

        def create_task_handler(*args: Any, **kwargs: Any) -> Any:
            inner = create(*args, **kwargs)
            passthrough = tuple(
                e for e in (*self.c.connection_errors, *self.c.channel_errors) if e is not KeyError
            )

            def on_task_received(message: Any) -> Any:
                return self.on_message(message, inner, passthrough)

            return on_task_received

        return create_task_handler

    def on_message(
        self, message: Any, inner: Any, passthrough: tuple[type[BaseException], ...]
    ) -> Any:
        """Check one task message; hand it to Celery or dead-letter it."""
        try:
            verdict: Problem | Accepted | None = check_message(message, self.policy)
        except Exception:  # the guard itself must not stop the worker
            logger.exception("celery_kit: envelope check failed; passing the message to Celery")
            verdict = None
        if isinstance(verdict, Problem):
            return self.refuse(message, verdict)  # never raises
        if verdict is not None:
            try:
                redelivered = (message.delivery_info or {}).get("redelivered")
                if self.cap is not None and redelivered and self._over_cap(message, verdict):
                    return None
                if verdict.task not in self.c.strategies:
                    self._not_registered(message, verdict)
            except Exception:
                logger.exception("celery_kit: envelope guard failed; passing the message on")
        try:
            return inner(message)
        except passthrough:
            raise  # connection trouble: Celery reconnects
        except Exception as exc:
            logger.exception("celery_kit: Celery's consumer failed on a message")
            return self.refuse(message, Problem("celery", f"Celery could not take it: {exc!r}"))

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        """kombu could not decode the body (bad compression, body encoding, …), or
        :mod:`celery_kit.tasks.compression` refused to inflate it."""
        if isinstance(exc, MalformedMessageError):
            code, _, detail = str(exc).partition(": ")
            self.refuse(message, Problem(code, detail))
            return
        headers = getattr(message, "headers", None)
        compression = headers.get("compression") if isinstance(headers, dict) else None
        code = "compression" if compression else "decode"
        what = f" (compression {compression!r})" if compression else ""
        self.refuse(message, Problem(code, f"kombu could not decode the body{what}: {exc}"))

    def on_raw_problem(self, item: bytes, queue: str, problem: Problem) -> None:
        """Redis: an item that is not a kombu message (already off the list)."""
        logger.error(
            "celery_kit: took a foreign item off Redis queue %s (%s); dead-lettered, the"
            " worker keeps serving",
            queue,
            problem,
        )
        entry = self._malformed_entry(problem, name="unknown", queue=queue, exchange="")
        entry.payload = preview_raw(item)
        self._keep(entry)
        from kombu.message import Message

        # what task_rejected receivers get: the start of the item, where it came from
        message = Message(body=entry.payload, delivery_info={"exchange": "", "routing_key": queue})
        self._rejected(message, MalformedMessageError(str(problem)))

    # -- outcomes ------------------------------------------------------------------------

    def refuse(self, message: Any, problem: Problem) -> None:
        """Dead-letter ``message`` as malformed, count it, acknowledge it."""
        info = getattr(message, "delivery_info", None) or {}
        headers = getattr(message, "headers", None)
        name = headers.get("task") if isinstance(headers, dict) else None
        queue = str(info.get("routing_key") or "unknown")
        logger.error(
            "celery_kit: refused a malformed message from queue %s (%s); dead-lettered, the"
            " worker keeps serving",
            queue,
            problem,
        )
        claimed = name[:_NAME_MAX] if isinstance(name, str) and name else "unknown"
        entry = self._malformed_entry(
            problem, name=claimed, queue=queue, exchange=str(info.get("exchange") or "")
        )
        try:
            entry.payload = preview(message)
        except Exception as exc:
            entry.payload = f"<no preview: {exc!r}>"
        self._keep(entry)
        self._ack(message)
        self._rejected(message, MalformedMessageError(str(problem)))

    def _malformed_entry(self, problem: Problem, *, name: str, queue: str, exchange: str) -> Any:
        # a fresh id: a malformed message must never replace the entry of a real task
        return DeadLetter(
            id=f"malformed-{uuid.uuid4().hex}",
            task=name,
            args=[],
            kwargs={},
            reason=MALFORMED,
            exception_type=_MALFORMED_TYPE,
            exception=str(problem),
            traceback="",
            attempts=1,
            queue=queue if not exchange else None,
            exchange=exchange or None,
            routing_key=queue,
            hostname=self.c.hostname,
        )

    def _over_cap(self, message: Any, task: Accepted) -> bool:
        try:
            deaths = deaths_on_redelivery(self.app, task.id)
        except Exception as err:
            logger.warning("celery_kit: could not count the deaths of %s (%s)", task.id, err)
            return False
        assert self.cap is not None
        if deaths < self.cap:
            if deaths:
                logger.warning(
                    "celery_kit: %s[%s] redelivered after its worker died running it"
                    " (%d of %d deaths allowed)",
                    task.task,
                    task.id,
                    deaths,
                    self.cap,
                )
            return False
        exc = PoisonMessageError(
            f"{task.task}[{task.id}] killed its worker (or pool process) {deaths} times while"
            " running; dead-lettered instead of run again"
            f" (dlq.max_worker_lost_deliveries = {self.cap}). Fix the cause, then:"
            f" celery -A <app> kit dlq replay {task.id}"
        )
        self._dead_letter(message, task, exc, reason="worker_lost", attempts=deaths)
        try:
            self.app.backend.mark_as_failure(task.id, exc, request=None, call_errbacks=False)
        except Exception as err:
            logger.warning("celery_kit: could not store FAILURE for %s (%s)", task.id, err)
        self._ack(message)
        self._rejected(message, exc)
        return True

    def _not_registered(self, message: Any, task: Accepted) -> None:
        from celery.exceptions import NotRegistered

        self._dead_letter(message, task, NotRegistered(task.task), reason="not_registered")

    def _dead_letter(
        self, message: Any, task: Accepted, exc: BaseException, *, reason: str, attempts: int = 1
    ) -> None:
        info = dict(message.delivery_info or {})
        info["priority"] = (message.properties or {}).get("priority")
        entry = dead_letter_from(
            exc,
            task_id=task.id,
            task_name=task.task,
            args=task.args,
            kwargs=task.kwargs,
            delivery_info=info,
            headers=message.headers,
            reason=reason,
            attempts=attempts,
            priority=delivered_priority(self.app, info),
            hostname=self.c.hostname,
        )
        self._keep(entry)

    def _keep(self, entry: DeadLetter) -> None:
        if not self.dlq_enabled:
            logger.error("celery_kit: dlq.enabled is off; dropped entry: %s", entry.to_json())
            return
        try:
            if self._store is None:
                self._store = DeadLetterStore(self.app)
        except Exception as exc:  # no Redis configured: keep it in the log at least
            logger.error("celery_kit: no dead-letter store (%s); entry: %s", exc, entry.to_json())
            return
        self._store.add_or_log(entry)

    def _rejected(self, message: Any, exc: BaseException) -> None:
        """Tell ``task_rejected`` receivers (the kit's metrics count it by ``reason``)."""
        from celery import signals

        try:  # Celery logs a failing receiver itself; this guards the dispatch
            signals.task_rejected.send(sender=self.c, message=message, exc=exc)
        except Exception:
            logger.exception("celery_kit: could not report a rejected message")

    def _ack(self, message: Any) -> None:
        try:
            message.ack()
        except Exception as exc:  # already acknowledged, or the connection is gone
            logger.warning("celery_kit: could not acknowledge a refused message (%s)", exc)
