"""Django integration without a broker: what is read, what wins, what is refused.

Django settings are configured once for this process (``settings.configure``, no
``DJANGO_SETTINGS_MODULE``, so other tests' apps get no Django fixup) and varied per test
with Django's own ``override_settings``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery

from celery_kit import ConfigError, make_app, settings_of

django = pytest.importorskip("django")

from django.conf import settings as django_settings  # noqa: E402
from django.test import override_settings  # noqa: E402

from celery_kit.integrations.django import (  # noqa: E402
    DjangoKitTask,
    DjangoRetryingTask,
    celery_settings,
)

DEAD = "redis://127.0.0.1:1/0"


@pytest.fixture(autouse=True)
def _django(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("CELERY_KIT_", "CELERY_BROKER", "CELERY_RESULT")):
            monkeypatch.delenv(name)
    if not django_settings.configured:
        django_settings.configure(INSTALLED_APPS=[], DATABASES={}, TIME_ZONE="UTC", USE_TZ=True)
    with override_settings(CELERY_BROKER_URL=DEAD):
        yield


def django_app(**overrides: Any) -> Celery:
    return make_app("djt", framework="django", **overrides)


def test_celery_namespace_setting_beats_the_kit_default() -> None:
    kombu = {"transport": "kombu"}
    with override_settings(CELERY_WORKER_PREFETCH_MULTIPLIER=4, CELERY_RESULT_EXPIRES=60):
        app = django_app(broker=kombu)
    assert (app.conf.worker_prefetch_multiplier, app.conf.result_expires) == (4, 60)
    assert app.conf.broker_url == DEAD
    origin = settings_of(app).origin_of("celery_overrides.worker_prefetch_multiplier")
    assert str(origin) == "django setting CELERY_WORKER_PREFETCH_MULTIPLIER"
    # the redelivery budget is derived from the effective (Django) prefetch
    assert app.conf.visibility_timeout > django_app(broker=kombu).conf.visibility_timeout


def test_unset_keys_keep_kit_defaults_and_stay_live_from_django() -> None:
    app = django_app()
    assert app.conf.worker_prefetch_multiplier == 1  # kit default, Celery's is 4
    assert app.conf.task_acks_late is True
    # a key the kit does not set is read by Celery from Django settings, live
    with override_settings(CELERY_TASK_ALWAYS_EAGER=True):
        assert app.conf.task_always_eager is True
    assert app.conf.task_always_eager is False


def test_unsafe_serializer_is_refused_naming_the_django_setting() -> None:
    with (
        override_settings(CELERY_TASK_SERIALIZER="pickle"),
        pytest.raises(ConfigError, match=r"pickle.*django setting CELERY_TASK_SERIALIZER"),
    ):
        django_app()


def test_unsafe_serializer_allowed_through_celery_kit_dict() -> None:
    with override_settings(
        CELERY_TASK_SERIALIZER="pickle",
        CELERY_ACCEPT_CONTENT=["json", "pickle"],
        CELERY_KIT={"serialization": {"allow_unsafe": True}},
    ):
        assert django_app().conf.task_serializer == "pickle"


def test_old_style_name_is_read_and_checked_like_celery_does() -> None:
    # Celery reads CELERYD_PREFETCH_MULTIPLIER under namespace="CELERY" too
    with (
        override_settings(CELERYD_PREFETCH_MULTIPLIER=0),
        pytest.raises(ConfigError, match="CELERYD_PREFETCH_MULTIPLIER"),
    ):
        django_app()


def test_soft_above_hard_from_two_django_settings_is_refused() -> None:
    with (
        override_settings(CELERY_TASK_SOFT_TIME_LIMIT=100, CELERY_TASK_TIME_LIMIT=50),
        pytest.raises(ConfigError, match="CELERY_TASK_TIME_LIMIT"),
    ):
        django_app()


def test_lookup_matches_celery_namespace_lookup() -> None:
    """celery_settings() uses private Celery helpers: pin it to Celery's real behaviour."""
    source = SimpleNamespace(
        CELERY_TASK_SERIALIZER="json",
        CELERY_ALWAYS_EAGER=True,  # old name of task_always_eager
        CELERYD_CONCURRENCY=3,  # old name of worker_concurrency
        BROKER_URL="redis://127.0.0.1:2/0",  # old name of broker_url
        CELERY_RESULT_EXPIRES=5,
    )
    found = celery_settings(source)
    plain = Celery("plain", set_as_current=False)
    plain.config_from_object(source, namespace="CELERY")
    assert {key: value for key, (value, _) in found.items()} == {
        "task_serializer": "json",
        "task_always_eager": True,
        "worker_concurrency": 3,
        "broker_url": "redis://127.0.0.1:2/0",
        "result_expires": 5,
    }
    for key, (value, _) in found.items():
        assert plain.conf[key] == value
    assert found["worker_concurrency"][1] == "CELERYD_CONCURRENCY"


def test_time_zone_is_celerys_fallback_and_celery_timezone_wins() -> None:
    with override_settings(TIME_ZONE="Europe/Paris"):
        assert django_app().conf.timezone == "Europe/Paris"
        with override_settings(CELERY_TIMEZONE="Asia/Tokyo"):
            app = django_app()
    assert app.conf.timezone == "Asia/Tokyo"
    assert str(settings_of(app).origin_of("timezone")) == "django setting CELERY_TIMEZONE"


def test_celery_kit_dict_feeds_kit_settings_and_env_beats_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kit = {"tasks": {"soft_time_limit_s": 20, "time_limit_s": 30}}
    with override_settings(CELERY_KIT=kit):
        app = django_app()
        assert app.conf.task_time_limit == 30
        assert str(settings_of(app).origin_of("tasks.time_limit_s")) == "django setting CELERY_KIT"
        monkeypatch.setenv("CELERY_KIT_TASKS__TIME_LIMIT_S", "40")
        assert django_app().conf.task_time_limit == 40
        assert django_app(tasks={"time_limit_s": 50}).conf.task_time_limit == 50


def test_unknown_key_in_celery_kit_dict_is_refused() -> None:
    with (
        override_settings(CELERY_KIT={"taks": {}}),
        pytest.raises(ConfigError, match=r"`taks` \(django setting CELERY_KIT\); did you mean"),
    ):
        django_app()


def test_conflicting_broker_in_kit_dict_and_celery_setting_is_refused() -> None:
    with (
        override_settings(CELERY_KIT={"broker_url": "redis://127.0.0.1:2/0"}),
        pytest.raises(ConfigError, match=r"CELERY_BROKER_URL .* keep only one"),
    ):
        django_app()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("CELERY_TASK_SERIALISER", "did you mean CELERY_TASK_SERIALIZER"),
        ("CELERY_KIT_TASKS", "kit settings go in the CELERY_KIT dict"),
    ],
)
def test_misspelled_celery_names_are_refused(name: str, message: str) -> None:
    with override_settings(**{name: "x"}), pytest.raises(ConfigError, match=message):
        django_app()


def test_other_packages_celery_prefixed_settings_are_left_alone() -> None:
    # django-celery-email's settings share the prefix; they are not Celery settings
    with override_settings(CELERY_EMAIL_BACKEND="x", CELERY_EMAIL_CHUNK_SIZE=10):
        django_app()


def test_every_task_has_the_on_commit_methods() -> None:
    app = django_app()

    @app.task(name="djt.plain", shared=False)
    def plain() -> None: ...

    @app.task(name="djt.retrying", base=DjangoRetryingTask, shared=False)
    def retrying() -> None: ...

    for task in (plain, retrying):
        assert callable(task.delay_on_commit)
        assert callable(task.apply_async_on_commit)
    assert isinstance(plain, DjangoKitTask)
    assert isinstance(retrying, DjangoRetryingTask)
    assert retrying.dead_letter is True  # RetryingTask's policy survives the mix


def test_fixup_installed_without_django_settings_module() -> None:
    from celery.fixups.django import DjangoFixup

    assert "DJANGO_SETTINGS_MODULE" not in os.environ
    app = django_app()
    assert [type(f) for f in app._fixups].count(DjangoFixup) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"framework": "flask"}, "celery_init_app"),
        ({"framework": "django", "settings": object()}, "either settings="),
    ],
)
def test_bad_framework_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_app("djt", **kwargs)


def test_unconfigured_django_is_a_config_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = (
        "from celery_kit import make_app, ConfigError\n"
        "try:\n    make_app('x', framework='django')\n"
        "except ConfigError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "DJANGO_SETTINGS_MODULE" in done.stdout


def test_secrets_in_conflicting_django_settings_are_masked() -> None:
    secret = "hunter2xyz"
    with (
        override_settings(
            CELERY_BROKER_URL=f"amqp://u:{secret}@rabbit//",
            CELERY_KIT={"broker_url": f"amqp://u:{secret}-other@rabbit//"},
        ),
        pytest.raises(ConfigError, match="keep only one") as caught,
    ):
        django_app()
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value)
