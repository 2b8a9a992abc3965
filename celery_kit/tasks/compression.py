"""Bound what a compressed task message may inflate to, before kombu decompresses it.

kombu decompresses a body whose ``compression`` header it knows while it builds the
``Message``, before any consumer callback: a few kilobytes of zlib can inflate to
gigabytes in the worker's main process (a "zip bomb"), far past ``tasks.max_message_bytes``.
:func:`guarded_message_class` returns a subclass of a channel's ``Message`` class that first
inflates at most ``max_bytes + 1`` bytes of a zlib/bzip2/lzma body; above the bound it
records the problem as the message's decode error *instead of* decompressing, so the
consumer's ``on_decode_error`` (the kit's envelope guard) dead-letters it.

Both brokers build their messages through ``channel.Message`` (kombu's virtual channels for
Redis, ``message_to_python`` for py-amqp); the class is set on the worker's task channel
only. Brotli and zstd bodies are not pre-checked (no bounded decompressor in the standard
library): their size is checked after kombu inflated them, like any body.
"""

from __future__ import annotations

import base64
import bz2
import lzma
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from celery_kit.exceptions import MalformedMessageError
from celery_kit.tasks.envelope import Problem

__all__ = ["guard_message_class", "guarded_message_class", "inflation_problem"]


def _zlib(limit: int) -> Callable[[bytes], bytes]:
    return lambda data: zlib.decompressobj().decompress(data, limit)


def _bz2(limit: int) -> Callable[[bytes], bytes]:
    return lambda data: bz2.BZ2Decompressor().decompress(data, max_length=limit)


def _lzma(limit: int) -> Callable[[bytes], bytes]:
    return lambda data: lzma.LZMADecompressor().decompress(data, max_length=limit)


#: kombu's content types and aliases (``kombu.compression``) -> a bounded decompressor.
_BOUNDED: dict[str, Callable[[int], Callable[[bytes], bytes]]] = {
    "application/x-gzip": _zlib,
    "gzip": _zlib,
    "zlib": _zlib,
    "application/x-bz2": _bz2,
    "bzip2": _bz2,
    "bzip": _bz2,
    "application/x-lzma": _lzma,
    "lzma": _lzma,
    "xz": _lzma,
}


def inflation_problem(compression: Any, body: Any, *, max_bytes: int) -> Problem | None:
    """A :class:`Problem` if ``body`` inflates beyond ``max_bytes``; ``None`` otherwise
    (also when it is not compressed the bounded way, or is corrupt: kombu reports that)."""
    bounded = _BOUNDED.get(compression) if isinstance(compression, str) else None
    if bounded is None or not isinstance(body, (bytes, bytearray)):
        return None
    try:
        inflated = bounded(max_bytes + 1)(bytes(body))
    except (zlib.error, OSError, ValueError, EOFError, lzma.LZMAError):
        return None
    if len(inflated) <= max_bytes:
        return None
    return Problem(
        "too_large",
        f"a {len(body)}-byte {compression} body inflates beyond tasks.max_message_bytes ="
        f" {max_bytes}; not decompressed",
    )


def _raw_problem(raw: Any, max_bytes: int) -> Problem | None:
    """:func:`inflation_problem` of a raw Redis envelope or py-amqp message. Costs two
    lookups for an uncompressed message: the body is only read when it is compressed."""
    if isinstance(raw, Mapping):  # kombu's virtual (Redis) envelope
        headers = raw.get("headers")
    else:  # py-amqp's Message
        headers = (getattr(raw, "properties", None) or {}).get("application_headers")
    compression = headers.get("compression") if isinstance(headers, Mapping) else None
    if compression is None or compression not in _BOUNDED:
        return None
    if isinstance(raw, Mapping):
        body = raw.get("body")
        properties = raw.get("properties")
        if isinstance(properties, Mapping) and properties.get("body_encoding") == "base64":
            body = base64.b64decode(body) if isinstance(body, str) else None
        elif isinstance(body, str):
            body = body.encode()
    else:
        body = getattr(raw, "body", None)
    return inflation_problem(compression, body, max_bytes=max_bytes)


def guarded_message_class(base: type[Any], *, max_bytes: int) -> type[Any]:
    """A subclass of the channel's ``Message`` class that refuses to inflate bombs."""

    class GuardedMessage(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raw = args[0] if args else kwargs.get("payload", kwargs.get("msg"))
            try:
                problem = _raw_problem(raw, max_bytes)
            except Exception:  # never in the way of a message kombu can build
                problem = None
            if problem is not None:
                # kombu skips decompression when the message already has an error, and
                # the consumer hands that error to on_decode_error
                self.errors = [(MalformedMessageError, MalformedMessageError(str(problem)), None)]
            super().__init__(*args, **kwargs)

    GuardedMessage.__name__ = GuardedMessage.__qualname__ = f"Guarded{base.__name__}"
    GuardedMessage.kit_guarded = True
    return GuardedMessage


def guard_message_class(channel: Any, *, max_bytes: int) -> bool:
    """Make ``channel`` build its messages with :func:`guarded_message_class`; False if
    it already does (or has no ``Message`` class)."""
    base = getattr(channel, "Message", None)
    if not isinstance(base, type) or getattr(base, "kit_guarded", False):
        return False
    channel.Message = guarded_message_class(base, max_bytes=max_bytes)
    return True
