"""Refusals report every problem at once: no problem hides another (issue: a typo hid pickle)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from celery_kit import ConfigError, make_app
from celery_kit.config.settings import Settings

DEAD = "redis://127.0.0.1:1/0"


def test_an_old_style_override_does_not_hide_pickle() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(
            _environ={},
            broker_url=DEAD,
            celery_overrides={"CELERY_TASK_SERIALIZER": "json", "task_serializer": "pickle"},
        )
    text = str(caught.value)
    assert "use `task_serializer`" in text
    assert "task_serializer = 'pickle'" in text
    assert "[unsafe-serializer]" in text


def test_an_override_typo_a_short_visibility_timeout_and_soft_above_hard_together() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(
            _environ={},
            broker_url=DEAD,
            # kombu's transport: the timeout must cover the budget (the kit's renews instead)
            broker={"visibility_timeout_s": 60, "transport": "kombu"},
            tasks={"soft_time_limit_s": 700, "time_limit_s": 600},
            celery_overrides={"task_ack_late": True, "worker_prefetch_multiplier": "x"},
        )
    items = str(caught.value).split("\n  - ")[1:]
    joined = "\n".join(items)
    assert "did you mean `task_acks_late`" in joined
    assert "`worker_prefetch_multiplier` = 'x' is not a valid int" in joined
    assert "broker.visibility_timeout_s = 60 s is too short" in joined
    assert "[soft-limit-not-below-hard]" in joined
    assert len(items) == 4


django = pytest.importorskip("django")


@pytest.fixture
def django_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from django.conf import settings
    from django.test import override_settings

    for name in list(os.environ):
        if name.startswith(("CELERY_KIT_", "CELERY_BROKER", "CELERY_RESULT")):
            monkeypatch.delenv(name)
    if not settings.configured:
        settings.configure(INSTALLED_APPS=[], DATABASES={}, TIME_ZONE="UTC", USE_TZ=True)
    with override_settings(
        CELERY_BROKER_URL=DEAD, CELERY_TASK_ACK_LATE=True, CELERY_ACCEPT_CONTENT=["pickle"]
    ):
        yield


@pytest.mark.usefixtures("django_env")
def test_a_django_typo_does_not_hide_pickle() -> None:
    with pytest.raises(ConfigError) as caught:
        make_app("djall", framework="django")
    text = str(caught.value)
    assert "CELERY_TASK_ACK_LATE is not a Celery setting" in text
    assert "did you mean CELERY_TASK_ACKS_LATE" in text
    assert "accept_content accepts pickle" in text
    assert "django setting CELERY_ACCEPT_CONTENT" in text
