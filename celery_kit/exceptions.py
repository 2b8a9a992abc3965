"""Typed errors raised by celery_kit; every message says what to change."""

from __future__ import annotations

__all__ = ["CeleryKitError", "ConfigError", "CountdownTooLongError", "PublishError"]


class CeleryKitError(Exception):
    """Base class of every error celery_kit raises on purpose."""


class ConfigError(CeleryKitError, ValueError):
    """A setting is unknown, malformed, or unsafe in combination with another.

    Raised when settings are loaded or an app is built, never later: a worker that
    would misbehave refuses to start instead.
    """


class PublishError(CeleryKitError):
    """A message was refused before it reached the broker."""


class CountdownTooLongError(PublishError, ValueError):
    """A countdown/ETA is longer than the broker can hold a message unacknowledged.

    On Redis such a message would be redelivered every visibility timeout ("again,
    and again in a loop"); on RabbitMQ the channel would be closed by
    ``consumer_timeout``. Refusing it at publish time is the only safe answer.
    """
