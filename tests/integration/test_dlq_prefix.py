"""``kit dlq show|replay`` take an unambiguous id prefix, on the private Redis."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from celery_kit import Settings, make_app
from celery_kit.cli import kit
from celery_kit.coordination.dead_letter import DeadLetter
from celery_kit.coordination.dlq import DeadLetterStore
from celery_kit.exceptions import DeadLetterLookupError


def letter(task_id: str) -> DeadLetter:
    return DeadLetter(
        id=task_id, task="proj.charge", args=[1], kwargs={}, reason="permanent",
        exception_type="proj.Error", exception="boom", traceback="Traceback ...", attempts=1,
    )  # fmt: skip


@pytest.fixture
def store_and_app(kit_redis_url: str) -> tuple[DeadLetterStore, object]:
    app = make_app("dlqprefix", settings=Settings(broker_url=kit_redis_url))
    store = DeadLetterStore(app)
    for task_id in ("abc123-0001", "abc456-0002", "fff999-0003"):
        store.add(letter(task_id))
    return store, app


def test_resolve_full_id_prefix_ambiguous_and_missing(store_and_app) -> None:  # type: ignore[no-untyped-def]
    store, _ = store_and_app
    assert store.resolve("abc123-0001") == "abc123-0001"
    assert store.resolve("abc1") == "abc123-0001"
    assert store.resolve("f") == "fff999-0003"
    with pytest.raises(DeadLetterLookupError, match=r"'abc' is ambiguous: 2 dead letters match"):
        store.resolve("abc")
    with pytest.raises(DeadLetterLookupError, match="no dead letter with id or id prefix 'zz'"):
        store.resolve("zz")


def test_cli_show_and_replay_by_prefix(store_and_app) -> None:  # type: ignore[no-untyped-def]
    store, app = store_and_app
    obj = SimpleNamespace(app=app)
    shown = CliRunner().invoke(kit, ["dlq", "show", "fff"], obj=obj)
    assert shown.exit_code == 0, shown.output
    assert "fff999-0003" in shown.output
    ambiguous = CliRunner().invoke(kit, ["dlq", "replay", "abc"], obj=obj)
    assert ambiguous.exit_code == 1
    assert "ambiguous" in ambiguous.output
    assert "abc123-0001" in ambiguous.output
    replayed = CliRunner().invoke(kit, ["dlq", "replay", "abc4"], obj=obj)
    assert replayed.exit_code == 0, replayed.output
    assert "replayed abc456-0002" in replayed.output
    assert store.get("abc456-0002") is None
    missing = CliRunner().invoke(kit, ["dlq", "show", "abc4"], obj=obj)
    assert missing.exit_code == 1
    assert "no dead letter with id or id prefix 'abc4'" in missing.output
