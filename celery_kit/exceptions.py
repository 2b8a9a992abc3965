"""Typed errors raised by celery_kit; every message says what to change."""

from __future__ import annotations

from typing import Any

from celery_kit.masking import mask_text

__all__ = [
    "CeleryKitError",
    "ConfigError",
    "CountdownTooLongError",
    "DeadLetterLookupError",
    "LockTakenError",
    "MalformedMessageError",
    "NotReplayableError",
    "PoisonMessageError",
    "PublishError",
    "RedisUnavailableError",
    "RenderError",
    "ResultBackendMissingError",
    "TaskDeferred",
    "TaskOptionError",
]


class CeleryKitError(Exception):
    """Base class of every error celery_kit raises on purpose.

    Secrets in the message (URL passwords, ``password = …`` values) are masked when the
    error is created, so no refusal path can print a credential: not the message, not
    the ``repr``, not a worker log.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*(mask_text(a) if isinstance(a, str) else a for a in args))


class ConfigError(CeleryKitError, ValueError):
    """A setting is unknown, malformed, or unsafe in combination with another.

    Raised when settings are loaded or an app is built, never later: a worker that
    would misbehave refuses to start instead.
    """


class RenderError(ConfigError):
    """The settings cannot be rendered into a deploy artifact (``kit render``)."""


class PublishError(CeleryKitError):
    """A message was refused before it reached the broker."""


class CountdownTooLongError(PublishError, ValueError):
    """A countdown/ETA is longer than the broker can hold a message unacknowledged.

    On Redis such a message would be redelivered every visibility timeout ("again,
    and again in a loop"); on RabbitMQ the channel would be closed by
    ``consumer_timeout``. Refusing it at publish time is the only safe answer.
    """


class DeadLetterLookupError(CeleryKitError, LookupError):
    """No dead letter has the given id or id prefix, or the prefix matches several."""


class TaskOptionError(CeleryKitError, ValueError):
    """A kit task option is misspelled or malformed; raised when the task class is created."""


class LockTakenError(CeleryKitError):
    """A lock is held by someone else (``on_busy="fail"``, or ``with lock(...)``)."""


class RedisUnavailableError(CeleryKitError):
    """The kit's Redis did not answer; a guard could not be checked, so the body did not run."""


class PoisonMessageError(CeleryKitError):
    """Stored as a task's failure when its pool process died too often while running it.

    The message was acknowledged and dead-lettered instead of being requeued again
    (``dlq.max_worker_lost_deliveries``); ``celery kit dlq replay`` re-publishes it.
    """


class TaskDeferred(CeleryKitError):
    """Recorded as the reason of a RETRY state when a kit guard postponed a task.

    A rate limit, a running duplicate (idempotency key), a taken lock
    (``lock_on_busy="retry"``) or an unreachable Redis defers the task with a countdown;
    ``request.retries`` is not increased. Raised as a failure under eager execution.
    """


class MalformedMessageError(CeleryKitError):
    """A consumed message is not a task message the kit can run (see ``celery_kit.tasks.envelope``).

    Never raised into Celery: the worker acknowledges the message, dead-letters it with
    reason ``malformed`` and this error's text as what was wrong, and keeps serving.
    """


class NotReplayableError(CeleryKitError):
    """A dead letter holds no valid task to publish again (reason ``malformed``)."""


class ResultBackendMissingError(CeleryKitError):
    """Results were asked for, but the app has no result backend that can keep them.

    Django Tasks' ``get_result`` reads what the worker stored: set ``result_backend``
    (``redis://...``; the default when the broker is Redis) in the kit's settings.
    """
