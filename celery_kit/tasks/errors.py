"""Exceptions a task raises to steer the kit's retry policy, and HTTP statuses mapped to them."""

from __future__ import annotations

#: Where users import these from; dead letters and the result backend's exception records
#: name ``celery_kit.tasks.<Name>``, as before this module was split off.
_PUBLIC_MODULE = "celery_kit.tasks"

__all__ = [
    "TRANSIENT_HTTP_STATUSES",
    "PermanentError",
    "PermanentHTTPError",
    "TransientError",
    "TransientHTTPError",
    "http_error",
    "is_transient_status",
]

#: HTTP statuses worth retrying: timeouts, throttling, and server-side trouble.
TRANSIENT_HTTP_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})


class PermanentError(Exception):
    """Raise from a task to say "retrying cannot help": it is dead-lettered at once."""

    __module__ = _PUBLIC_MODULE


class TransientError(Exception):
    """Raise from a task to ask for a retry, optionally not before ``retry_after_s``.

    ``RetryingTask`` honours ``retry_after_s`` (e.g. an HTTP ``Retry-After``) as the
    lower bound of the next delay, within the backoff cap.
    """

    __module__ = _PUBLIC_MODULE

    def __init__(self, message: str = "", *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentHTTPError(PermanentError):
    """An HTTP status retrying cannot fix (most 4xx)."""

    __module__ = _PUBLIC_MODULE

    def __init__(self, message: str = "", *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class TransientHTTPError(TransientError):
    """An HTTP status worth retrying (408, 425, 429, 5xx gateway/availability)."""

    __module__ = _PUBLIC_MODULE

    def __init__(
        self, message: str = "", *, status: int = 0, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.status = status


def is_transient_status(status: int) -> bool:
    """True for HTTP statuses worth retrying (see ``TRANSIENT_HTTP_STATUSES``)."""
    return status in TRANSIENT_HTTP_STATUSES


def http_error(
    status: int, message: str = "", *, retry_after_s: float | None = None
) -> PermanentHTTPError | TransientHTTPError | None:
    """The exception to raise for an HTTP response status, or ``None`` if it succeeded.

    Example::

        if (exc := http_error(resp.status_code, resp.text[:200],
                              retry_after_s=parse_retry_after(resp))) is not None:
            raise exc
    """
    if status < 400:
        return None
    text = f"HTTP {status}" + (f": {message}" if message else "")
    if is_transient_status(status):
        return TransientHTTPError(text, status=status, retry_after_s=retry_after_s)
    # other 4xx: the request itself is wrong; 501, 505, ...: the server will never do it
    return PermanentHTTPError(text, status=status)
