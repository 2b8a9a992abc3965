"""Run Celery's SIGTERM cold shutdown from the event loop, not inside the signal handler.

Rendered deployments set ``REMAP_SIGTERM=SIGQUIT`` (docs/deploy.md): SIGTERM starts Celery's
cold shutdown, which waits the soft shutdown timeout, cancels running tasks and stops the
pool — all inside the signal handler. A SIGTERM that lands while the main process is
writing a job to a pool process leaves that job half-sent, and the pool's ``join`` then
waits for its result forever (seen in about 1 of 10 SIGTERMs while draining a backlog of
short tasks on RabbitMQ, Celery 5.7; only the kubelet's SIGKILL ends it). This
consumer bootstep makes the handler only note the signal; a timer in the event loop, where
no write is in progress, then calls Celery's own handler. Without ``REMAP_SIGTERM`` it does
nothing.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from celery import bootsteps

__all__ = ["DeferredColdShutdown", "install_deferred_shutdown"]

logger = logging.getLogger(__name__)

#: How often the event loop looks for a noted SIGTERM.
CHECK_INTERVAL_S = 0.1
#: ``__name__`` Celery gives its cold-shutdown signal handler (celery/apps/worker.py).
_CELERY_COLD_HANDLER = "worker_Cold"


def install_deferred_shutdown(app: Any) -> None:
    """Add :class:`DeferredColdShutdown` to ``app``'s workers."""
    app.steps["consumer"].add(DeferredColdShutdown)


class DeferredColdShutdown(bootsteps.StartStopStep):
    """Consumer bootstep: SIGTERM (remapped to a cold shutdown) handled from the loop."""

    label = "celery_kit deferred cold shutdown"

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self._celery_handler: Any = None
        self._noted = False
        self._tref: Any = None

    def start(self, c: Any) -> None:
        from billiard.common import REMAP_SIGTERM

        if REMAP_SIGTERM != "SIGQUIT":
            return
        current = signal.getsignal(signal.SIGTERM)
        if self._celery_handler is None:
            if getattr(current, "__name__", "") != _CELERY_COLD_HANDLER:
                return  # not Celery's cold-shutdown handler: leave it alone
            self._celery_handler = current
            signal.signal(signal.SIGTERM, self._note)
        if self._tref is None:
            self._tref = c.timer.call_repeatedly(CHECK_INTERVAL_S, self._check, ())

    def stop(self, c: Any) -> None:
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None

    shutdown = stop

    def _note(self, signum: int, frame: Any) -> None:
        # Only a flag: the interrupted code may hold any lock or be mid-write.
        self._noted = True

    def _check(self) -> None:
        if not self._noted or self._celery_handler is None:
            return
        self._noted = False
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None
        logger.info("celery_kit: SIGTERM: cold shutdown from the event loop")
        self._celery_handler(signal.SIGTERM, None)
