"""Publish-time guards: refuse messages the broker would redeliver in a loop.

The kit's AMQP class (Celery's ``amqp=`` extension point) checks every outgoing task
message, whichever API sent it (``delay``, ``apply_async``, ``send_task``, canvas,
``retry``), before it is serialized. The check costs two comparisons when the message has
no countdown/ETA.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from celery.app.amqp import AMQP

from celery_kit.exceptions import CountdownTooLongError

if TYPE_CHECKING:
    from celery_kit.queues import PriorityMap

__all__ = ["KitAMQP", "check_delay"]


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


class KitAMQP(AMQP):
    """Celery's AMQP helper plus the kit's publish-time checks."""

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
            from celery_kit.app import settings_of

            check_delay(
                name,
                countdown=countdown,
                eta=eta,
                max_countdown_s=settings_of(self.app).tasks.max_countdown_s,
            )
        return super().as_task_v2(task_id, name, args, kwargs, countdown, eta, *rest, **options)

    @cached_property
    def kit_priorities(self) -> PriorityMap:
        """Kit priority ⇄ broker priority for this app's queues (see ``celery_kit.queues``)."""
        from celery_kit.app import settings_of
        from celery_kit.queues import PriorityMap

        return PriorityMap.from_settings(
            settings_of(self.app), default_queue=str(self.app.conf.task_default_queue)
        )

    @cached_property
    def send_task_message(self) -> Any:
        """Celery's sender, translating every message's kit priority for the broker.

        It also stamps the publish time, and counts ``sent`` with metrics on.
        """
        from celery_kit.metrics import wrap_sender as with_metrics

        # _create_task_sender is what Celery's own cached property calls (celery/app/amqp.py)
        sender = self._create_task_sender()  # type: ignore[attr-defined]
        return with_metrics(self.app, self.kit_priorities.wrap_sender(sender))
