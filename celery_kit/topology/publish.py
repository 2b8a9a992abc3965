"""The publish path: the kit's AMQP class and its one sender wrapper.

The kit's AMQP class (Celery's ``amqp=`` extension point) sees every outgoing task
message, whichever API sent it (``delay``, ``apply_async``, ``send_task``, canvas,
``retry``). Before serializing it refuses delays the broker would redeliver in a loop
(two comparisons when the message has no countdown/ETA); its sender wrapper then resolves
the queue once, translates the kit priority for the broker, stamps the publish time and
runs the app's sent hooks (the metrics ``sent`` counter).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from celery.app.amqp import AMQP

from celery_kit.exceptions import CountdownTooLongError
from celery_kit.state import find_state, settings_of
from celery_kit.topology.priority import priority_map

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["PUBLISHED_AT_HEADER", "KitAMQP", "check_delay", "wrap_sender"]

logger = logging.getLogger(__name__)

#: Message header holding the publish time (epoch seconds) the kit stamps on every task
#: message; Celery's protocol carries none. Queue wait times and oldest-message ages read it.
PUBLISHED_AT_HEADER = "kit_published_at"


def check_delay(
    name: str,
    *,
    countdown: float | None,
    eta: datetime | str | None,
    max_countdown_s: float,
    now: datetime | None = None,
) -> None:
    """Raise :class:`CountdownTooLongError` if the message's delay exceeds the budget."""
    if countdown is None and eta is None:
        return
    delay = float(countdown) if countdown is not None else 0.0
    if eta is not None:
        when = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        delay = max(delay, (when - (now or datetime.now(timezone.utc))).total_seconds())
    if delay > max_countdown_s:
        raise CountdownTooLongError(
            f"task {name!r}: a delay of {delay:g} s exceeds tasks.max_countdown_s"
            f" ({max_countdown_s:g} s). Celery keeps a delayed message unacknowledged in the"
            " worker until it runs, and the broker would redeliver it (Redis visibility"
            " timeout) or drop the channel (RabbitMQ consumer_timeout) in a loop. Raise"
            " tasks.max_countdown_s (the visibility timeout grows with it), or schedule"
            " the work with beat."
        )


def wrap_sender(app: Celery, send: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap Celery's ``send_task_message``: the kit's one per-message publish step.

    Celery merges per-call options, task attributes and the router's answer into the
    keyword ``priority`` before this point (``celery/app/base.py: send_task``), so this
    is the one place that sees the final value for every publishing API. The publish
    stamp is always written; the sent hooks run after the broker took the message.
    """
    default_queue = str(app.conf.task_default_queue)
    state = find_state(app)
    hooks = state.sent_hooks if state is not None else []

    def send_task_message(
        producer: Any,
        name: str,
        message: Any,
        exchange: Any = None,
        routing_key: str | None = None,
        queue: Any = None,
        **options: Any,
    ) -> Any:
        qname = queue if isinstance(queue, str) else getattr(queue, "name", None)
        target = default_queue if qname is None and exchange is None else qname
        broker = priority_map(app).to_broker(target or routing_key, options.get("priority"))
        if broker is None:
            options.pop("priority", None)
        else:
            options["priority"] = broker
        now = time.time()
        message.headers[PUBLISHED_AT_HEADER] = now
        extra = options.get("headers")
        if extra and PUBLISHED_AT_HEADER in extra:  # a retry copies its request's headers
            options["headers"] = {**extra, PUBLISHED_AT_HEADER: now}
        result = send(producer, name, message, exchange, routing_key, queue, **options)
        if hooks:
            counted = qname or routing_key or (default_queue if exchange is None else str(exchange))
            for hook in hooks:
                try:
                    hook(name, counted)
                except Exception:  # an observer never fails a publish that succeeded
                    logger.exception("celery_kit: a sent hook failed for %s", name)
        return result

    return send_task_message


class KitAMQP(AMQP):
    """Celery's AMQP helper plus the kit's publish-time checks and sender wrapper."""

    def as_task_v2(
        self,
        task_id: str,
        name: str,
        args: Any = None,
        kwargs: Any = None,
        countdown: float | None = None,
        eta: Any = None,
        *rest: Any,
        **options: Any,
    ) -> Any:
        if countdown is not None or eta is not None:
            check_delay(
                name,
                countdown=countdown,
                eta=eta,
                max_countdown_s=settings_of(self.app).tasks.max_countdown_s,
            )
        return super().as_task_v2(task_id, name, args, kwargs, countdown, eta, *rest, **options)

    @cached_property
    def send_task_message(self) -> Any:
        """Celery's sender inside the kit's :func:`wrap_sender`."""
        # _create_task_sender is what Celery's own cached property calls (celery/app/amqp.py)
        sender = self._create_task_sender()  # type: ignore[attr-defined]
        return wrap_sender(self.app, sender)
