"""Bound what a compressed task message may inflate to, before kombu decompresses it.

kombu decompresses a body whose ``compression`` header it knows while it builds the
``Message``, before any consumer callback: a few kilobytes of zlib can inflate to
gigabytes in the worker's main process (a "zip bomb"), far past ``tasks.max_message_bytes``.
:func:`guarded_message_class` returns a subclass of a channel's ``Message`` class that first
inflates at most ``max_bytes + 1`` bytes of a zlib/bzip2/lzma body; above the bound it
records the problem as the message's decode error *instead of* decompressing, so the
consumer's ``on_decode_error`` (the kit's envelope guard) dead-letters it.

Brotli and zstd bodies (kombu supports them when ``brotli`` / ``backports.zstd`` or Python
3.14's ``compression.zstd`` are installed) are bounded the same way: zstd through
``ZstdDecompressor.decompress(max_length=...)`` frame by frame, brotli through
``Decompressor.process(output_buffer_limit=...)``, which brotli has since 1.2. A brotli body
met with an older brotli installed cannot be inflated safely and is refused with that
reason (upgrade brotli, or compress with zlib).

Both brokers build their messages through ``channel.Message`` (kombu's virtual channels for
Redis, ``message_to_python`` for py-amqp); the class is set on the worker's task channel
only.
"""

from __future__ import annotations

import base64
import bz2
import lzma
import sys
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from celery_kit.exceptions import MalformedMessageError
from celery_kit.tasks.envelope import Problem

__all__ = ["guard_message_class", "guarded_message_class", "inflation_problem"]


class _Unbounded(Exception):
    """The installed library cannot inflate this body within a bound."""


def _zlib(limit: int) -> Callable[[bytes], int]:
    return lambda data: len(zlib.decompressobj().decompress(data, limit))


def _bz2(limit: int) -> Callable[[bytes], int]:
    return lambda data: len(bz2.BZ2Decompressor().decompress(data, max_length=limit))


def _lzma(limit: int) -> Callable[[bytes], int]:
    return lambda data: len(lzma.LZMADecompressor().decompress(data, max_length=limit))


def _zstd(limit: int) -> Callable[[bytes], int]:
    def inflate(data: bytes) -> int:
        try:  # the module kombu uses (kombu/compression.py)
            if sys.version_info >= (3, 14):
                from compression import zstd  # type: ignore[import-not-found,unused-ignore]
            else:
                from backports import zstd  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return 0  # kombu cannot inflate it either: it reports the decode error
        total, rest = 0, data
        try:
            while rest and total < limit:  # a body may hold several frames
                frame = zstd.ZstdDecompressor()
                total += len(frame.decompress(rest, max_length=limit - total))
                if not frame.eof:
                    break  # the bound is reached, or the frame is cut short (kombu fails)
                rest = frame.unused_data
        except zstd.ZstdError as exc:
            raise ValueError(str(exc)) from exc
        return total

    return inflate


def _brotli(limit: int) -> Callable[[bytes], int]:
    def inflate(data: bytes) -> int:
        try:
            import brotli  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            return 0  # kombu cannot inflate it either: it reports the decode error
        inflater = brotli.Decompressor()
        try:
            total = len(inflater.process(data, output_buffer_limit=limit))
        except TypeError as exc:  # brotli < 1.2 has no output_buffer_limit
            raise _Unbounded(
                f"brotli {getattr(brotli, '__version__', '< 1.2')} cannot inflate within a"
                " bound; install brotli >= 1.2 or compress task messages with zlib"
            ) from exc
        except brotli.error as exc:
            raise ValueError(str(exc)) from exc
        while total < limit and not inflater.is_finished():
            if inflater.can_accept_more_data():
                break  # all input used and not finished: cut short (kombu fails)
            total += len(inflater.process(b"", output_buffer_limit=limit - total))
        return total

    return inflate


#: kombu's content types and aliases (``kombu.compression``) -> a bounded decompressor.
_BOUNDED: dict[str, Callable[[int], Callable[[bytes], int]]] = {
    "application/x-gzip": _zlib,
    "gzip": _zlib,
    "zlib": _zlib,
    "application/x-bz2": _bz2,
    "bzip2": _bz2,
    "bzip": _bz2,
    "application/x-lzma": _lzma,
    "lzma": _lzma,
    "xz": _lzma,
    "application/zstd": _zstd,
    "zstd": _zstd,
    "zstandard": _zstd,
    "application/x-brotli": _brotli,
    "brotli": _brotli,
}


def inflation_problem(compression: Any, body: Any, *, max_bytes: int) -> Problem | None:
    """A :class:`Problem` if ``body`` inflates beyond ``max_bytes``; ``None`` otherwise
    (also when it is not compressed the bounded way, or is corrupt: kombu reports that)."""
    bounded = _BOUNDED.get(compression) if isinstance(compression, str) else None
    if bounded is None or not isinstance(body, (bytes, bytearray)):
        return None
    try:
        inflated = bounded(max_bytes + 1)(bytes(body))
    except _Unbounded as exc:
        return Problem("compression", f"a {compression} body: {exc}")
    except (zlib.error, OSError, ValueError, EOFError, lzma.LZMAError):
        return None
    if inflated <= max_bytes:
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
