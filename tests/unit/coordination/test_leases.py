"""The lease keeper renews registered leases from one thread and reports lost ones."""

from __future__ import annotations

import threading
import time

from celery_kit.coordination.leases import LeaseKeeper


def wait_for(event: threading.Event) -> bool:
    return event.wait(10)


def test_renews_until_dropped() -> None:
    keeper = LeaseKeeper()
    calls: list[float] = []
    renewed_twice = threading.Event()

    def renew() -> bool:
        calls.append(time.monotonic())
        if len(calls) >= 2:
            renewed_twice.set()
        return True

    handle = keeper.keep(renew, ttl_s=0.3, what="test lease")
    assert wait_for(renewed_twice)
    keeper.drop(handle)
    count = len(calls)
    time.sleep(0.3)  # two renewal periods: none may happen after the drop
    assert len(calls) <= count + 1  # at most one renewal already in flight
    assert keeper.held() == 0


def test_a_lost_lease_is_dropped_and_reported() -> None:
    keeper = LeaseKeeper()
    lost = threading.Event()
    keeper.keep(lambda: False, ttl_s=0.15, what="test lease", on_lost=lost.set)
    assert wait_for(lost)
    assert keeper.held() == 0


def test_renewal_errors_are_retried() -> None:
    keeper = LeaseKeeper()
    attempts: list[int] = []
    recovered = threading.Event()

    def flaky() -> bool:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("redis away")
        recovered.set()
        return True

    handle = keeper.keep(flaky, ttl_s=0.15, what="test lease")
    assert wait_for(recovered)
    keeper.drop(handle)


def test_the_thread_ends_when_idle() -> None:
    keeper = LeaseKeeper(name="kit-test-idle-keeper")
    handle = keeper.keep(lambda: True, ttl_s=30, what="test lease")
    keeper.drop(handle)

    def running() -> bool:
        return any(t.name == "kit-test-idle-keeper" for t in threading.enumerate())

    deadline = time.monotonic() + 10
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running()
