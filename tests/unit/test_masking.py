"""Secrets never appear in a kit error: message, repr, whichever source fed the value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from celery_kit import ConfigError, make_app
from celery_kit.exceptions import CeleryKitError
from celery_kit.masking import MASK, mask, mask_text

SECRET = "hunter2xyz"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("CELERY_KIT_", "CELERY_BROKER", "CELERY_RESULT")):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    "text",
    [
        f"rediss://:{SECRET}@cache:6380/0",
        f"amqp://user:{SECRET}@rabbit//",
        f"db+postgresql://user:{SECRET}@db/results",
        f"sqs://AKIAEXAMPLE:{SECRET}@",
        f"redis://:{SECRET}@a:6379/0;redis://:{SECRET}@b:6379/0",
        f"password = '{SECRET}'",
        f'{{"sentinel_kwargs": {{"password": "{SECRET}"}}}}',
        f"`flower.basic_auth` = ['admin:{SECRET}']",
        f"sasl_token={SECRET}",
    ],
)
def test_mask_text_hides_every_credential_form(text: str) -> None:
    masked = mask_text(f"refused: {text} (from env)")
    assert SECRET not in masked
    assert MASK in masked


def test_mask_text_keeps_prose_and_urls_without_credentials() -> None:
    text = "basic auth: put user:password in FLOWER_BASIC_AUTH; broker redis://h:6379/0"
    assert mask_text(text) == text


def test_mask_values_by_key_and_url() -> None:
    assert mask({"opts": {"password": SECRET}, "url": f"amqp://u:{SECRET}@h//"}) == {
        "opts": {"password": MASK},
        "url": f"amqp://u:{MASK}@h//",
    }


def _refusal(**kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        make_app("masked", **kwargs)  # type: ignore[arg-type]
    return caught.value


def _assert_hidden(exc: BaseException) -> None:
    assert SECRET not in str(exc)
    assert SECRET not in repr(exc)
    assert MASK in str(exc)


def test_secret_in_toml_is_masked(tmp_path: Path) -> None:
    config = tmp_path / "kit.toml"
    config.write_text(f'broker_url = "mongodb://u:{SECRET}@db:27017/x"\n')
    _assert_hidden(_refusal(config=config))


def test_secret_in_env_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_KIT_BROKER_URL", f"sqs://AKIAEXAMPLE:{SECRET}@")
    _assert_hidden(_refusal())


def test_secret_in_kwargs_is_masked() -> None:
    _assert_hidden(_refusal(result_backend=f"db+postgresql://u:{SECRET}@db/results"))


def test_secret_in_celery_overrides_is_masked() -> None:
    bad_json = f'{{"sentinel_kwargs": {{"password": "{SECRET}"}}'  # one brace short
    exc = _refusal(celery_overrides={"broker_transport_options": bad_json})
    _assert_hidden(exc)


def test_secret_in_env_celery_overrides_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CELERY_KIT_CELERY_OVERRIDES__RESULT_BACKEND_TRANSPORT_OPTIONS", f"password={SECRET}"
    )
    _assert_hidden(_refusal())


def test_every_kit_error_masks_at_construction() -> None:
    exc = CeleryKitError(f"could not reach rediss://:{SECRET}@cache:6380/0")
    _assert_hidden(exc)
    assert exc.args == (f"could not reach rediss://:{MASK}@cache:6380/0",)


def test_secret_never_reaches_the_worker_log(tmp_path: Path) -> None:
    # Given a project whose broker URL (with a password) is refused at import
    (tmp_path / "maskproj.py").write_text("from celery_kit import make_app\napp = make_app('m')\n")
    env = {**os.environ, "CELERY_KIT_BROKER_URL": f"sqs://AKIAEXAMPLE:{SECRET}@"}
    # When a real `celery worker` tries to start it
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "maskproj", "worker"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it refuses, and neither stream shows the password
    assert done.returncode != 0
    assert "sqs" in done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_settings_repr_masks_secrets() -> None:
    from celery_kit import Settings

    settings = Settings(
        _environ={},
        broker_url=f"redis://:{SECRET}@cache:6379/0",
        result_backend=f"redis://:{SECRET}@cache:6379/1",
        celery_overrides={"broker_transport_options": {"sentinel_kwargs": {"password": SECRET}}},
    )
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in repr(settings.redis)
    assert f"redis://:{MASK}@cache:6379/0" in repr(settings)
