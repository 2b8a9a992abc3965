"""Completions sent without waiting: the exit flush is connected only where it is needed."""

from __future__ import annotations

from celery import signals

from celery_kit import Settings, make_app
from celery_kit.tasks.completion import connect_completion_flush, flush_completions

DEAD = "redis://127.0.0.1:1/0"  # never contacted


def test_the_exit_flush_is_connected_only_for_apps_with_idempotency_keys() -> None:
    plain = make_app("plain_c", settings=Settings(_environ={}, broker_url=DEAD))

    @plain.task(name="plain_c.noop", shared=False)
    def noop() -> None: ...

    keyed = make_app("keyed_c", settings=Settings(_environ={}, broker_url=DEAD))

    @keyed.task(name="keyed_c.charge", shared=False, idempotency_key="c:{order}")
    def charge(order: str) -> None: ...

    before = len(signals.worker_process_shutdown.receivers)
    assert connect_completion_flush(plain) is False
    assert len(signals.worker_process_shutdown.receivers) == before
    assert connect_completion_flush(keyed) is True
    assert len(signals.worker_process_shutdown.receivers) == before + 1
    # a process that never used the kit's Redis has nothing to flush (and no client)
    flush_completions(keyed)
