"""Bounded inflation of compressed task messages, before kombu decompresses them."""

from __future__ import annotations

import base64
import bz2
import lzma
import sys
import zlib
from types import SimpleNamespace
from typing import Any

import pytest
from kombu.message import Message
from kombu.transport.virtual.base import Message as VirtualMessage

from celery_kit.exceptions import MalformedMessageError
from celery_kit.tasks.compression import (
    guard_message_class,
    guarded_message_class,
    inflation_problem,
)

LIMIT = 1024
BIG = b"0" * (LIMIT + 1)
SMALL = b"0" * LIMIT


@pytest.mark.parametrize(
    ("compression", "compress"),
    [
        ("application/x-gzip", zlib.compress),
        ("zlib", zlib.compress),
        ("application/x-bz2", bz2.compress),
        ("application/x-lzma", lzma.compress),
        ("xz", lzma.compress),
    ],
)
def test_a_body_that_inflates_past_the_bound_is_a_problem(compression: str, compress: Any) -> None:
    found = inflation_problem(compression, compress(BIG), max_bytes=LIMIT)
    assert found is not None
    assert found.code == "too_large"
    assert "inflates beyond tasks.max_message_bytes = 1024; not decompressed" in found.detail
    assert inflation_problem(compression, compress(SMALL), max_bytes=LIMIT) is None


def test_what_cannot_be_bounded_is_left_to_kombu() -> None:
    assert inflation_problem(None, b"x", max_bytes=LIMIT) is None
    assert inflation_problem("application/x-bogus", b"x", max_bytes=LIMIT) is None
    assert inflation_problem("application/zstd", b"x" * 10, max_bytes=LIMIT) is None  # corrupt
    assert inflation_problem("brotli", b"x" * 10, max_bytes=LIMIT) is None  # corrupt
    assert inflation_problem("zlib", b"not zlib at all", max_bytes=LIMIT) is None  # kombu fails
    assert inflation_problem("zlib", "text", max_bytes=LIMIT) is None


def _amqp_raw(body: bytes, compression: str) -> Any:
    """What py-amqp hands kombu: properties with application_headers, and the body."""
    return SimpleNamespace(
        body=body,
        delivery_tag=1,
        delivery_info={"routing_key": "q"},
        properties={"application_headers": {"compression": compression}},
    )


def test_a_guarded_amqp_message_records_the_bomb_instead_of_inflating_it() -> None:
    from kombu.transport.pyamqp import Message as AmqpMessage

    cls = guarded_message_class(AmqpMessage, max_bytes=LIMIT)
    bomb = zlib.compress(b"[" + b" " * 10_000_000 + b"]")
    msg = cls(_amqp_raw(bomb, "application/x-gzip"), channel=None)
    assert msg.body == bomb  # still compressed: nothing was inflated
    ((kind, exc, _),) = msg.errors
    assert kind is MalformedMessageError
    assert str(exc).startswith("too_large: a ")
    ok = cls(_amqp_raw(zlib.compress(SMALL), "application/x-gzip"), channel=None)
    assert ok.errors == []
    assert ok.body == SMALL


def test_a_guarded_redis_message_reads_the_base64_body() -> None:
    channel = SimpleNamespace(decode_body=lambda body, enc: base64.b64decode(body))
    cls = guarded_message_class(VirtualMessage, max_bytes=LIMIT)
    payload = {
        "body": base64.b64encode(zlib.compress(BIG)).decode(),
        "headers": {"compression": "application/x-gzip"},
        "properties": {"delivery_tag": "t", "body_encoding": "base64", "delivery_info": {}},
    }
    msg = cls(payload, channel=channel)
    assert isinstance(msg, VirtualMessage)  # kombu's isinstance checks still hold
    assert msg.errors
    assert isinstance(msg.errors[0][1], MalformedMessageError)


def test_a_channel_is_guarded_once() -> None:
    channel = SimpleNamespace(Message=Message)
    assert guard_message_class(channel, max_bytes=LIMIT)
    assert issubclass(channel.Message, Message)
    assert not guard_message_class(channel, max_bytes=LIMIT)
    assert not guard_message_class(SimpleNamespace(), max_bytes=LIMIT)


def _zstd() -> Any:
    return (
        pytest.importorskip("backports.zstd")
        if sys.version_info < (3, 14)
        else __import__("compression.zstd", fromlist=["zstd"])
    )


@pytest.mark.parametrize("compression", ["application/zstd", "zstd", "zstandard"])
def test_zstd_is_inflated_within_the_bound(compression: str) -> None:
    zstd = _zstd()
    found = inflation_problem(compression, zstd.compress(b"0" * 50_000_000), max_bytes=LIMIT)
    assert found is not None
    assert found.code == "too_large"
    assert inflation_problem(compression, zstd.compress(SMALL), max_bytes=LIMIT) is None


def test_zstd_frames_after_a_small_first_frame_count_too() -> None:
    zstd = _zstd()
    body = zstd.compress(b"0" * 10) + zstd.compress(b"1" * 50_000_000)
    found = inflation_problem("application/zstd", body, max_bytes=LIMIT)
    assert found is not None
    assert found.code == "too_large"
    two_small = zstd.compress(b"0" * 500) + zstd.compress(b"1" * 500)
    assert inflation_problem("application/zstd", two_small, max_bytes=LIMIT) is None


@pytest.mark.parametrize("compression", ["application/x-brotli", "brotli"])
def test_brotli_is_inflated_within_the_bound(compression: str) -> None:
    brotli = pytest.importorskip("brotli")
    found = inflation_problem(compression, brotli.compress(b"0" * 50_000_000), max_bytes=LIMIT)
    assert found is not None
    assert found.code == "too_large"
    assert inflation_problem(compression, brotli.compress(SMALL), max_bytes=LIMIT) is None
    cut = brotli.compress(bytes(range(256)) * 64)[:-4]  # not finished: kombu reports it
    assert inflation_problem(compression, cut, max_bytes=1_000_000) is None


def test_a_brotli_that_cannot_bound_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class OldDecompressor:  # brotli < 1.2: process(data) only
        def process(self, data: bytes) -> bytes:
            raise AssertionError("must not inflate without a bound")

    monkeypatch.setitem(
        sys.modules,
        "brotli",
        SimpleNamespace(Decompressor=OldDecompressor, error=ValueError, __version__="1.1.0"),
    )
    found = inflation_problem("brotli", b"anything", max_bytes=LIMIT)
    assert found is not None
    assert found.code == "compression"
    assert "brotli 1.1.0 cannot inflate within a bound" in found.detail
    assert "install brotli >= 1.2" in found.detail


def test_a_guarded_message_refuses_a_zstd_bomb_without_inflating_it() -> None:
    from kombu.transport.pyamqp import Message as AmqpMessage

    zstd = _zstd()
    cls = guarded_message_class(AmqpMessage, max_bytes=LIMIT)
    bomb = zstd.compress(b"[" + b" " * 10_000_000 + b"]")
    msg = cls(_amqp_raw(bomb, "application/zstd"), channel=None)
    assert msg.body == bomb
    ((kind, exc, _),) = msg.errors
    assert kind is MalformedMessageError
    assert "inflates beyond" in str(exc)
