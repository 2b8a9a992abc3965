"""Broker and backend URL checks shared by the settings models."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = [
    "AMQP_SCHEMES",
    "REDIS_SCHEMES",
    "SUPPORTED_BROKER_SCHEMES",
    "UNSUPPORTED_BROKERS",
    "check_redis_url",
    "scheme",
]

#: Broker schemes the kit supports, and why some common others are not.
SUPPORTED_BROKER_SCHEMES: frozenset[str] = frozenset({"redis", "rediss", "amqp", "amqps", "pyamqp"})
UNSUPPORTED_BROKERS: dict[str, str] = {
    "sqs": "SQS has no priorities and its own visibility semantics the kit does not derive",
    "memory": "the in-memory transport is not shared between processes",
    "filesystem": "the filesystem transport has no acknowledgement semantics",
    "librabbitmq": "librabbitmq is unmaintained; use amqp:// (py-amqp)",
}
AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
REDIS_SCHEMES = frozenset({"redis", "rediss"})


def scheme(url: str) -> str:
    """The lowercase scheme of ``url`` (the whole text if it has none)."""
    return url.strip().split("://", 1)[0].lower() if "://" in url else url.strip().lower()


def check_redis_url(url: str, *, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` if ``url`` has a bad port or database."""
    parts = urlsplit(url.strip())
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"{what}: the port in {parts.netloc!r} is not a number") from None
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(f"{what}: the Redis database {db!r} must be a number, e.g. /0")
