"""DeferredColdShutdown: the SIGTERM handler only notes; the loop runs Celery's handler."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import billiard.common
import pytest

from celery_kit.topology import shutdown
from celery_kit.topology.shutdown import DeferredColdShutdown


class _Timer:
    def __init__(self) -> None:
        self.calls: list[tuple[float, Any]] = []

    def call_repeatedly(self, interval: float, fun: Any, args: Any) -> Any:
        self.calls.append((interval, fun))
        return self

    def cancel(self) -> None:
        self.calls.clear()


class _Consumer:
    def __init__(self) -> None:
        self.timer = _Timer()


@pytest.fixture
def sigterm() -> Iterator[list[int]]:
    """Celery's cold handler installed for SIGTERM (restored afterwards); records calls."""
    calls: list[int] = []

    def worker_Cold(signum: int, frame: Any) -> None:  # Celery's handler name
        calls.append(signum)

    before = signal.signal(signal.SIGTERM, worker_Cold)
    try:
        yield calls
    finally:
        signal.signal(signal.SIGTERM, before)


def test_remapped_sigterm_runs_celerys_handler_from_the_loop(
    sigterm: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(billiard.common, "REMAP_SIGTERM", "SIGQUIT")
    c = _Consumer()
    step = DeferredColdShutdown(c)
    step.start(c)
    ((interval, check),) = c.timer.calls
    assert interval == shutdown.CHECK_INTERVAL_S
    # the handler now only notes the signal
    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # type: ignore[operator]
    assert sigterm == []
    check()  # the next loop tick runs Celery's handler, once
    assert sigterm == [signal.SIGTERM]
    assert c.timer.calls == []
    step.start(c)  # a consumer restart does not wrap twice
    assert signal.getsignal(signal.SIGTERM).__name__ == "_note"  # type: ignore[union-attr]


def test_without_remap_nothing_changes(sigterm: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(billiard.common, "REMAP_SIGTERM", None)
    c = _Consumer()
    before = signal.getsignal(signal.SIGTERM)
    DeferredColdShutdown(c).start(c)
    assert signal.getsignal(signal.SIGTERM) is before
    assert c.timer.calls == []


def test_a_foreign_handler_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(billiard.common, "REMAP_SIGTERM", "SIGQUIT")

    def mine(signum: int, frame: Any) -> None: ...

    before = signal.signal(signal.SIGTERM, mine)
    try:
        c = _Consumer()
        DeferredColdShutdown(c).start(c)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)
