"""What a consumed task message must look like (task protocol v2) before Celery sees it.

Pure checks, no I/O: :func:`check_message` runs on every kombu message in the worker's main
process (:mod:`celery_kit.tasks.consumer_guard`), :func:`check_raw` on every raw Redis list item
(:mod:`celery_kit.tasks.redis_guard`). Each returns a :class:`Problem` saying what is wrong, or
the parts the worker needs. They reject exactly what would otherwise stop Celery's consumer
(a ``KeyError``/``TypeError``/``ValueError`` escaping its message callback kills the worker on
RabbitMQ and loops it as a "connection error" on Redis), plus what the kit never publishes.

Protocol v2, as Celery documents it (docs "Message Protocol"): headers carry ``id``, ``task``,
``retries``, ``eta``, ``expires``, ``timelimit`` …; the body is ``[args, kwargs, embed]``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from celery.utils.time import maybe_iso8601

__all__ = ["Accepted", "Policy", "Problem", "check_body", "check_headers", "check_message"]

#: Characters of a malformed message kept in its dead letter for inspection.
PREVIEW_CHARS = 4096
#: Headers that are optional in protocol v2 but, when present, must be text (or null).
_TEXT_HEADERS = (
    "shadow",
    "root_id",
    "parent_id",
    "group",
    "lang",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "meth",
)
#: ``content_encoding`` values kombu decodes without guessing (``binary`` skips decoding).
_ENCODINGS = frozenset({"utf-8", "utf8", "binary", "ascii-8bit"})
#: Longest ``eta``/``expires`` text: an ISO-8601 timestamp with offset is ~32 characters.
_MAX_TIME_TEXT = 64
#: Redis: the body is base64 inside a JSON envelope (4/3 larger) next to the headers.
_RAW_SLACK = 64 * 1024


@dataclass(frozen=True)
class Problem:
    """What is wrong with a message.

    ``code`` is one of ``too_large``, ``content_type``, ``headers``, ``body``, ``decode``,
    ``envelope`` (Redis: not a kombu message), and from the consumer guard ``compression``
    (kombu could not inflate it) or ``celery`` (Celery's handler failed on it); ``detail``
    says what, for people.
    """

    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass(frozen=True)
class Accepted:
    """A message that passed: what the worker's guard needs from it."""

    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Policy:
    """What a worker accepts: content types (MIME, from ``accept_content``) and a size."""

    accept: frozenset[str]
    max_bytes: int

    @classmethod
    def of(cls, accept_content: Any, *, max_bytes: int) -> Policy:
        """Build from Celery's ``accept_content`` (names or MIME types)."""
        from kombu.serialization import prepare_accept_content

        return cls(frozenset(prepare_accept_content(accept_content) or ()), max_bytes)


def _typename(value: Any) -> str:
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_headers(headers: Any) -> Problem | None:
    """Check protocol v2 headers; ``None`` when Celery can take them."""
    if not isinstance(headers, Mapping):
        return Problem(
            "headers",
            f"headers are {_typename(headers)}, not a mapping: not a task protocol v2 message"
            " (the kit publishes protocol 2 only)",
        )
    for name in ("id", "task"):
        value = headers.get(name)
        if not isinstance(value, str) or not value:
            what = "missing" if name not in headers else f"{_short(value)} ({_typename(value)})"
            return Problem("headers", f"header {name!r} must be a non-empty string, got {what}")
    retries = headers.get("retries", 0)
    if type(retries) is not int or retries < 0:
        return Problem(
            "headers",
            f"header 'retries' must be an integer >= 0, got {_short(retries)}"
            f" ({_typename(retries)})",
        )
    for name in ("eta", "expires"):
        found = _check_time(name, headers.get(name))
        if found is not None:
            return found
    timelimit = headers.get("timelimit")
    if timelimit is not None and not _is_timelimit(timelimit):
        return Problem(
            "headers",
            f"header 'timelimit' must be [soft, hard] (numbers or null), got {_short(timelimit)}",
        )
    for name in _TEXT_HEADERS:
        value = headers.get(name)
        if value is not None and not isinstance(value, str):
            return Problem(
                "headers",
                f"header {name!r} must be a string or null, got {_short(value)}"
                f" ({_typename(value)})",
            )
    ignore = headers.get("ignore_result")
    if ignore is not None and not isinstance(ignore, bool):
        return Problem("headers", f"header 'ignore_result' must be a boolean, got {_short(ignore)}")
    return None


def _check_time(name: str, value: Any) -> Problem | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _MAX_TIME_TEXT:
        return Problem(
            "headers",
            f"header {name!r} must be an ISO-8601 timestamp string or null, got {_short(value)}"
            f" ({_typename(value)})",
        )
    try:
        maybe_iso8601(value)  # what Celery's Request parses it with
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        return Problem("headers", f"header {name!r} = {value!r} is not ISO-8601 ({exc})")
    return None


def _is_timelimit(value: Any) -> bool:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return False
    return all(v is None or (type(v) in (int, float) and v >= 0) for v in value)


def check_body(payload: Any) -> Problem | None:
    """Check a decoded protocol v2 body ``[args, kwargs, embed]``; ``None`` when fine."""
    if not isinstance(payload, (list, tuple)) or len(payload) != 3:
        size = f" of {len(payload)}" if isinstance(payload, (list, tuple)) else ""
        return Problem(
            "body",
            f"body must be [args, kwargs, embed], got a {_typename(payload)}{size}:"
            f" {_short(payload)}",
        )
    args, kwargs, embed = payload
    if not isinstance(args, (list, tuple)):
        return Problem("body", f"args must be a list, got {_typename(args)}")
    if not isinstance(kwargs, dict) or not all(type(k) is str for k in kwargs):
        return Problem("body", f"kwargs must be an object with string keys, got {_short(kwargs)}")
    if embed is None:
        return None
    if not isinstance(embed, dict):
        return Problem("body", f"embed must be an object or null, got {_typename(embed)}")
    for name, kind in (("callbacks", list), ("errbacks", list), ("chain", list), ("chord", dict)):
        value = embed.get(name)
        if value is not None and not isinstance(value, kind):
            return Problem(
                "body", f"embed {name!r} must be a {kind.__name__} or null, got {_typename(value)}"
            )
    return None


def check_message(message: Any, policy: Policy) -> Problem | Accepted:
    """Check a kombu message end to end: size, content type/encoding, headers, body.

    Decodes the body with ``message.decode()``, whose result kombu caches: Celery's own
    ``message.payload`` later reuses it, so a valid message is decoded once, as before.
    """
    body = message.body
    size = len(body) if body is not None else 0
    if size > policy.max_bytes:
        return Problem(
            "too_large",
            f"body is {size} bytes, above tasks.max_message_bytes = {policy.max_bytes}",
        )
    content_type = message.content_type
    if content_type not in policy.accept:
        from kombu.serialization import registry  # type: ignore[attr-defined]

        known = registry.type_to_name.get(content_type)  # e.g. 'pickle'
        return Problem(
            "content_type",
            f"content type {content_type!r}{f' ({known})' if known else ''} is not accepted"
            f" (accept_content: {', '.join(sorted(policy.accept))})",
        )
    encoding = message.content_encoding
    if not isinstance(encoding, str) or encoding.lower() not in _ENCODINGS:
        return Problem("content_type", f"content encoding {encoding!r} is not utf-8 or binary")
    headers = message.headers
    found = check_headers(headers)
    if found is not None:
        return found
    try:
        payload = message.decode()
    except Exception as exc:
        return Problem("decode", f"body does not decode as {content_type}: {exc}")
    bad = check_body(payload)
    if isinstance(bad, Problem):
        return bad
    return Accepted(
        id=headers["id"], task=headers["task"], args=list(payload[0]), kwargs=payload[1]
    )


def check_raw(item: bytes | str, *, max_bytes: int) -> Problem | None:
    """Check one raw Redis list item is a kombu envelope the channel can turn into a message.

    kombu's Redis channel parses the item and reads ``properties["delivery_tag"]`` and
    ``delivery_info`` before any consumer callback; a foreign item fails there.
    """
    if len(item) > max_bytes * 4 // 3 + _RAW_SLACK:
        return Problem(
            "too_large",
            f"Redis item is {len(item)} bytes, far above tasks.max_message_bytes = {max_bytes}",
        )
    try:
        envelope = json.loads(item)
    except ValueError as exc:
        return Problem("envelope", f"not a kombu message: not JSON ({exc})")
    if not isinstance(envelope, dict):
        return Problem("envelope", f"not a kombu message: a JSON {_typename(envelope)}")
    properties = envelope.get("properties")
    if not isinstance(properties, dict) or not isinstance(
        properties.get("delivery_tag"), (str, int)
    ):
        return Problem("envelope", "not a kombu message: no properties.delivery_tag")
    info = properties.get("delivery_info")
    if not isinstance(info, dict) or "exchange" not in info or "routing_key" not in info:
        return Problem("envelope", "not a kombu message: no properties.delivery_info")
    for name in ("content-type", "content-encoding"):
        if not isinstance(envelope.get(name), (str, type(None))):
            return Problem("envelope", f"{name} must be a string")
    if not isinstance(envelope.get("headers"), (dict, type(None))):
        return Problem("headers", "headers are not a mapping")
    body, encoding = envelope.get("body"), properties.get("body_encoding")
    if not isinstance(body, (str, type(None))):
        return Problem("envelope", f"body must be a string, got {_typename(body)}")
    if encoding == "base64" and body:
        try:
            base64.b64decode(body)
        except ValueError as exc:
            return Problem("envelope", f"body is not base64 ({exc})")
    elif encoding not in (None, "base64"):
        return Problem("envelope", f"unknown body_encoding {encoding!r}")
    return None


def preview(message: Any) -> str:
    """The first :data:`PREVIEW_CHARS` characters of a message, for its dead letter."""
    body = getattr(message, "body", None)
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body[: PREVIEW_CHARS * 2]).decode("utf-8", "replace")
    shown = {
        "content_type": getattr(message, "content_type", None),
        "content_encoding": getattr(message, "content_encoding", None),
        "headers": getattr(message, "headers", None),
        "body": body if body is None else str(body)[:PREVIEW_CHARS],
    }
    return json.dumps(shown, default=repr)[:PREVIEW_CHARS]


def preview_raw(item: bytes | str) -> str:
    """The first :data:`PREVIEW_CHARS` characters of a raw Redis item."""
    head = item[: PREVIEW_CHARS * 2]
    text = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
    return text[:PREVIEW_CHARS]
