"""Envelope checks without sockets: headers, bodies, raw Redis items, the setting, and the
consumer guard's decisions (called directly with real kombu messages)."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
import redis
from kombu.message import Message

from celery_kit import ConfigError, Settings, make_app
from celery_kit.coordination.dead_letter import DeadLetter
from celery_kit.coordination.dlq import DeadLetterStore
from celery_kit.exceptions import MalformedMessageError, NotReplayableError
from celery_kit.tasks.consumer_guard import _Guard
from celery_kit.tasks.envelope import (
    PREVIEW_CHARS,
    Accepted,
    Policy,
    Problem,
    check_body,
    check_headers,
    check_message,
    check_raw,
    preview,
    preview_raw,
)

DEAD = "redis://127.0.0.1:1/0"
POLICY = Policy.of(["json"], max_bytes=1024)


def headers(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "lang": "py",
        "task": "t.add",
        "id": "abc",
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
        "root_id": None,
        "parent_id": None,
        "group": None,
        "argsrepr": "(1,)",
        "kwargsrepr": "{}",
    }
    base.update(changes)
    return base


class _Channel:
    no_ack_consumers = None

    def __init__(self) -> None:
        self.acked: list[Any] = []

    def basic_ack(self, tag: Any, multiple: bool = False) -> None:
        self.acked.append(tag)


def message(
    body: bytes = b'[[1], {}, {"callbacks": null}]',
    *,
    hdrs: Any = None,
    content_type: str | None = "application/json",
    content_encoding: str | None = "utf-8",
    redelivered: bool = False,
) -> Message:
    msg = Message(
        body=body,
        channel=_Channel(),
        delivery_tag="tag-1",
        content_type=content_type,
        content_encoding=content_encoding,
        headers=headers() if hdrs is None else hdrs,
        delivery_info={"exchange": "", "routing_key": "q", "redelivered": redelivered},
    )
    msg.accept = POLICY.accept
    return msg


# -- headers -----------------------------------------------------------------------------------


def test_valid_protocol_v2_headers_pass() -> None:
    assert check_headers(headers()) is None
    assert check_headers(headers(eta="2026-12-02T07:00:00+00:00", expires=None)) is None
    assert check_headers(headers(timelimit=[5, 10.5], retries=3)) is None
    assert check_headers({"id": "x", "task": "t"}) is None  # optional headers may be absent


@pytest.mark.parametrize(
    ("hdrs", "says"),
    [
        (None, "headers are NoneType, not a mapping"),
        (["id"], "headers are list"),
        ({k: v for k, v in headers().items() if k != "id"}, "header 'id' must be a non-empty"),
        (headers(id=""), "header 'id' must be a non-empty string, got ''"),
        (headers(id=5), "header 'id' must be a non-empty string, got 5 (int)"),
        (headers(task=None), "header 'task' must be a non-empty string"),
        (headers(retries="3"), "header 'retries' must be an integer >= 0, got '3' (str)"),
        (headers(retries=-1), "header 'retries' must be an integer >= 0, got -1"),
        (headers(retries=True), "header 'retries' must be an integer >= 0, got True (bool)"),
        (headers(eta=1700000000), "header 'eta' must be an ISO-8601 timestamp string"),
        (headers(eta="next tuesday"), "header 'eta' = 'next tuesday' is not ISO-8601"),
        (headers(expires="2026-13-45"), "header 'expires' = '2026-13-45' is not ISO-8601"),
        (headers(eta="2" * 100), "header 'eta' must be an ISO-8601 timestamp string"),
        (headers(timelimit=[1, 2, 3]), "header 'timelimit' must be [soft, hard]"),
        (headers(timelimit=["1", None]), "header 'timelimit' must be [soft, hard]"),
        (headers(timelimit=5), "header 'timelimit' must be [soft, hard]"),
        (headers(shadow=["x"]), "header 'shadow' must be a string or null"),
        (headers(root_id=1), "header 'root_id' must be a string or null"),
        (headers(ignore_result="yes"), "header 'ignore_result' must be a boolean"),
    ],
)
def test_bad_headers_say_what_is_wrong(hdrs: Any, says: str) -> None:
    found = check_headers(hdrs)
    assert found is not None
    assert found.code == "headers"
    assert says in found.detail


# -- bodies ------------------------------------------------------------------------------------


def test_valid_bodies_pass() -> None:
    assert check_body([[1, 2], {"a": 1}, {"callbacks": None, "chord": None}]) is None
    assert check_body([[], {}, None]) is None
    assert check_body(((), {}, {})) is None


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"args": [1]}, "body must be [args, kwargs, embed], got a dict"),
        ([[1], {}], "got a list of 2"),
        (5, "got a int"),
        ("text", "got a str"),
        ([{"a": 1}, {}, {}], "args must be a list, got dict"),
        ([[], [], {}], "kwargs must be an object with string keys"),
        ([[], {}, []], "embed must be an object or null, got list"),
        ([[], {}, {"callbacks": "x"}], "embed 'callbacks' must be a list or null"),
        ([[], {}, {"chord": []}], "embed 'chord' must be a dict or null"),
    ],
)
def test_bad_bodies_say_what_is_wrong(body: Any, says: str) -> None:
    found = check_body(body)
    assert found is not None
    assert found.code == "body"
    assert says in found.detail


# -- whole messages ----------------------------------------------------------------------------


def test_a_valid_message_is_accepted_and_decoded_once() -> None:
    msg = message()
    found = check_message(msg, POLICY)
    assert found == Accepted(id="abc", task="t.add", args=[1], kwargs={})
    # kombu caches the decoded body: Celery's own message.payload reuses it
    assert msg._decoded_cache == [[1], {}, {"callbacks": None}]


@pytest.mark.parametrize(
    ("kwargs", "code", "says"),
    [
        ({"body": b"[" * 2000}, "too_large", "body is 2000 bytes, above tasks.max_message_bytes"),
        ({"content_type": "application/x-python-serialize"}, "content_type", "(pickle) is not"),
        ({"content_type": None}, "content_type", "content type None is not accepted"),
        ({"content_encoding": "utf-16"}, "content_type", "content encoding 'utf-16'"),
        ({"content_encoding": None}, "content_type", "content encoding None"),
        ({"hdrs": {"task": "t"}}, "headers", "header 'id'"),
        ({"body": b'[[1], {"a": '}, "decode", "body does not decode as application/json"),
        ({"body": b'{"args": []}'}, "body", "body must be [args, kwargs, embed]"),
        ({"body": b"\xff\xfe"}, "decode", "does not decode"),
    ],
)
def test_bad_messages_say_what_is_wrong(kwargs: dict[str, Any], code: str, says: str) -> None:
    found = check_message(message(**kwargs), POLICY)
    assert isinstance(found, Problem)
    assert (found.code, says in found.detail) == (code, True), found
    assert str(found).startswith(f"{code}: ")


def test_the_size_bound_is_checked_before_decoding() -> None:
    msg = message(body=b"x" * 1025)  # not JSON either: decoding it would fail differently
    found = check_message(msg, POLICY)
    assert isinstance(found, Problem)
    assert found.code == "too_large"
    assert msg._decoded_cache is None


# -- raw Redis items ---------------------------------------------------------------------------


def _raw(**changes: Any) -> bytes:
    env: dict[str, Any] = {
        "body": base64.b64encode(b"[[], {}, {}]").decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers(),
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": "d1",
            "delivery_info": {"exchange": "", "routing_key": "q"},
        },
    }
    env.update(changes)
    return json.dumps(env).encode()


def test_a_kombu_envelope_passes_the_raw_check() -> None:
    assert check_raw(_raw(), max_bytes=1024) is None
    assert check_raw(_raw(body=None), max_bytes=1024) is None


@pytest.mark.parametrize(
    ("item", "code", "says"),
    [
        (b"hello", "envelope", "not JSON"),
        (b"[1, 2]", "envelope", "a JSON list"),
        (b'{"body": "x"}', "envelope", "no properties.delivery_tag"),
        (_raw(properties={"delivery_tag": "d"}), "envelope", "no properties.delivery_info"),
        (_raw(headers=[1]), "headers", "headers are not a mapping"),
        (_raw(body=5), "envelope", "body must be a string"),
        (_raw(body="a"), "envelope", "body is not base64"),
        (_raw(**{"content-type": 5}), "envelope", "content-type must be a string"),
        (b"x" * (1024 * 4 // 3 + 64 * 1024 + 1), "too_large", "far above"),
    ],
)
def test_foreign_redis_items_say_what_is_wrong(item: bytes, code: str, says: str) -> None:
    found = check_raw(item, max_bytes=1024)
    assert found is not None
    assert found.code == code
    assert says in found.detail


def test_unknown_body_encoding_is_refused() -> None:
    item = _raw()
    env = json.loads(item)
    env["properties"]["body_encoding"] = "rot13"
    found = check_raw(json.dumps(env).encode(), max_bytes=1024)
    assert found is not None
    assert "unknown body_encoding 'rot13'" in found.detail


def test_previews_are_truncated() -> None:
    text = preview(message(body=b"[" + b"9," * 10_000 + b"]"))
    assert len(text) <= PREVIEW_CHARS
    assert json.loads(preview(message()))["headers"]["task"] == "t.add"
    assert len(preview_raw(b"z" * 10_000)) == PREVIEW_CHARS
    assert preview_raw(b"\xff ok") == "\ufffd ok"


# -- the setting -------------------------------------------------------------------------------


def test_max_message_bytes_defaults_to_10_mib() -> None:
    assert Settings(_environ={}).tasks.max_message_bytes == 10 * 1024 * 1024


@pytest.mark.parametrize("value", ["0", "100", str(600 * 1024 * 1024)])
def test_an_unusable_max_message_bytes_is_refused_with_the_range(value: str) -> None:
    with pytest.raises(ConfigError, match=r"tasks\.max_message_bytes = \d+ is outside 1024\.\."):
        Settings(_environ={"CELERY_KIT_TASKS__MAX_MESSAGE_BYTES": value})


def test_a_non_numeric_max_message_bytes_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_message_bytes"):
        Settings(_environ={"CELERY_KIT_TASKS__MAX_MESSAGE_BYTES": "10MB"})


# -- DLQ: malformed entries are never replayed -------------------------------------------------


def test_replaying_a_malformed_entry_is_refused_before_touching_redis() -> None:
    store = DeadLetterStore(client=redis.Redis(port=1), key_prefix="p")
    entry = DeadLetter(
        id="malformed-1",
        task="unknown",
        args=[],
        kwargs={},
        reason="malformed",
        exception_type="celery_kit.exceptions.MalformedMessageError",
        exception="headers: header 'id' must be a non-empty string, got missing",
        traceback="",
        attempts=1,
        payload="{...}",
    )
    with pytest.raises(NotReplayableError, match="no valid task to publish again"):
        store.replay(make_app("t", settings=Settings(_environ={}, broker_url=DEAD)), entry)
    assert DeadLetter.from_json(entry.to_json()).payload == "{...}"


# -- the consumer guard, called directly -------------------------------------------------------


@pytest.fixture
def guard() -> _Guard:
    settings = Settings(_environ={}, broker_url=DEAD, dlq={"enabled": False})
    app = make_app("t", settings=settings)

    @app.task(name="t.add", shared=False)
    def add(x: int) -> int:
        return x

    return _Guard(_Consumer(app))


class _Consumer:
    """The attributes of Celery's worker Consumer the guard reads (hashable, as Celery's
    signal dispatch needs for a sender)."""

    hostname = "w@h"
    connection_errors = (ConnectionError, KeyError)  # KeyError: as kombu's Redis transport
    channel_errors = ()

    def __init__(self, app: Any) -> None:
        self.app = app
        self.strategies = {"t.add": object()}


def _handler(guard: _Guard, inner: Any) -> Any:
    return guard.wrap_factory(lambda: inner)()


def test_the_guard_hands_valid_messages_to_celery(guard: _Guard) -> None:
    seen: list[Any] = []
    msg = message()
    _handler(guard, seen.append)(msg)
    assert seen == [msg]
    assert not msg.channel.acked


def test_the_guard_acks_and_logs_a_malformed_message_instead_of_calling_celery(
    guard: _Guard, caplog: pytest.LogCaptureFixture
) -> None:
    from celery import signals

    seen: list[Any] = []
    reported: list[Any] = []

    def on_rejected(sender: Any = None, message: Any = None, exc: Any = None, **_: Any) -> None:
        reported.append((sender, message, exc))

    msg = message(hdrs={"task": "t.add"})
    signals.task_rejected.connect(on_rejected, weak=False, dispatch_uid="test_envelope")
    try:
        with caplog.at_level(logging.ERROR, logger="celery_kit.tasks.consumer_guard"):
            _handler(guard, seen.append)(msg)
    finally:
        signals.task_rejected.disconnect(dispatch_uid="test_envelope")
    assert seen == []
    ((sender, sent, exc),) = reported
    assert (sender, sent) == (guard.c, msg)
    assert isinstance(exc, MalformedMessageError)
    assert str(exc).startswith("headers: header 'id'")
    assert msg.channel.acked == ["tag-1"]
    assert "refused a malformed message from queue q (headers: header 'id'" in caplog.text
    # dlq.enabled is off: the entry is in the log, not silently dropped
    assert '"reason": "malformed"' in caplog.text


def test_an_unforeseen_error_in_celery_is_refused_not_raised(guard: _Guard) -> None:
    def inner(message: Any) -> None:
        raise KeyError("id")  # Redis would take this for a connection error

    msg = message()
    _handler(guard, inner)(msg)
    assert msg.channel.acked == ["tag-1"]


def test_a_failure_while_refusing_never_hands_the_message_to_celery(
    guard: _Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver blew up")

    monkeypatch.setattr("celery.signals.task_rejected.send", broken)
    msg = message(hdrs={"task": "t.add"})
    _handler(guard, seen.append)(msg)
    assert seen == []  # it was acknowledged: Celery must not run or ack it again
    assert msg.channel.acked == ["tag-1"]


def test_connection_errors_from_celery_still_reach_celery(guard: _Guard) -> None:
    def inner(message: Any) -> None:
        raise ConnectionError("broker gone")

    with pytest.raises(ConnectionError):
        _handler(guard, inner)(message())


def test_decode_errors_are_refused_with_the_compression_named(
    guard: _Guard, caplog: pytest.LogCaptureFixture
) -> None:
    msg = message(hdrs=headers(compression="application/x-bogus"))
    with caplog.at_level(logging.ERROR, logger="celery_kit.tasks.consumer_guard"):
        guard.on_decode_error(msg, KeyError("application/x-bogus"))
    assert msg.channel.acked == ["tag-1"]
    assert "compression: kombu could not decode the body (compression" in caplog.text


def test_a_redelivery_without_redis_runs_uncounted(
    guard: _Guard, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Any] = []
    with caplog.at_level(logging.WARNING, logger="celery_kit.tasks.consumer_guard"):
        _handler(guard, seen.append)(message(redelivered=True))
    assert len(seen) == 1  # the kit's Redis is unreachable: Celery's behaviour applies
    assert "could not count the deaths of abc" in caplog.text


def test_a_refused_inflation_arrives_as_a_decode_error_and_keeps_its_code(
    guard: _Guard, caplog: pytest.LogCaptureFixture
) -> None:
    msg = message(hdrs=headers(compression="application/x-gzip"))
    exc = MalformedMessageError("too_large: a 50-byte zlib body inflates beyond the bound")
    with caplog.at_level(logging.ERROR, logger="celery_kit.tasks.consumer_guard"):
        guard.on_decode_error(msg, exc)
    assert msg.channel.acked == ["tag-1"]
    assert "(too_large: a 50-byte zlib body inflates beyond the bound)" in caplog.text
