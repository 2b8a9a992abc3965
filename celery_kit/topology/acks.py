"""Acknowledge at once in a solo worker on RabbitMQ, instead of a poll timeout later.

With the solo pool a task runs inside the event loop, in the middle of reading the
broker's socket. kombu's py-amqp reader reschedules itself with ``hub.call_soon``, so the
next message is read from the loop's list of ready callbacks; the task's ack (Celery
queues it with ``Consumer.call_soon_ack`` → ``hub.call_soon``) is then added to that list
while it is being worked through, and the loop goes on to poll the socket with the
ack still unsent. With a prefetch count of 1 (the kit's ``worker_prefetch_multiplier = 1``
times a concurrency of 1) RabbitMQ sends nothing more until that ack arrives, so the poll
waits for its timeout: about two tasks per two seconds (measured: 3 no-op tasks/s
against 1,500 with this step; plain Celery shows the same with a prefetch count of 1,
celery/celery#6941 reports it for the threads pool).

This consumer bootstep makes ``call_soon_ack`` run the ack or reject right away when it
is called on the loop's own thread, as Celery's blocking loop (``synloop``) already does:
the ack is a frame written to the socket, which py-amqp allows while it reads. Only
solo workers on py-amqp get it; prefork, threads and Redis workers are unchanged.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps
from vine import ppartial

__all__ = ["PromptAck", "install_prompt_ack"]

logger = logging.getLogger(__name__)


def install_prompt_ack(app: Any) -> None:
    """Add :class:`PromptAck` to ``app``'s workers."""
    app.steps["consumer"].add(PromptAck)


def applies(consumer: Any) -> bool:
    """A solo pool consuming from py-amqp (the only combination that stalls)."""
    # deferred: worker-only module
    from celery.concurrency.solo import TaskPool as SoloPool

    connection = getattr(consumer, "connection", None)
    transport = getattr(connection, "transport", None)
    return isinstance(consumer.pool, SoloPool) and getattr(transport, "driver_type", "") == "amqp"


class PromptAck(bootsteps.StartStopStep):
    """Consumer bootstep: acks and rejects requested on the loop thread run at once."""

    label = "celery_kit prompt ack"
    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, c: Any) -> None:
        if not applies(c) or getattr(c, "_kit_prompt_ack", False):
            return
        deferred = c.call_soon_ack
        loop_thread = threading.get_ident()  # consumer steps start on the loop's thread

        def call_soon_ack(p: Any, *args: Any, **kwargs: Any) -> Any:
            if c.hub is None or threading.get_ident() != loop_thread:
                return deferred(p, *args, **kwargs)
            call = ppartial(p, *args, **kwargs)
            try:
                call()
            except Exception:  # as Celery's own immediate path: log, keep consuming
                logger.exception("celery_kit: acknowledging a message failed")
            return call

        c.call_soon_ack = call_soon_ack
        c._kit_prompt_ack = True
