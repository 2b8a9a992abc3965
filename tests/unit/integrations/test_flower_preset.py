"""The Flower preset without sockets: the argv and environment `kit flower` builds, its refusals."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from celery_kit import ConfigError, Settings
from celery_kit.cli import main
from celery_kit.config import FlowerSettings
from celery_kit.config.operations import auth_pattern_problem
from celery_kit.integrations.flower import flower_launch
from celery_kit.integrations.flower_auth import BASIC_AUTH_ENV, parse_credentials

OAUTH_ENV = {
    "FLOWER_OAUTH2_KEY": "client-id",
    "FLOWER_OAUTH2_SECRET": "client-secret-xyz",
    "FLOWER_OAUTH2_REDIRECT_URI": "https://ops.example.com/flower/login",
}


def flower(tmp_path: Path, **values: object) -> FlowerSettings:
    """[flower] settings whose state file lives in tmp_path."""
    values.setdefault("db", str(tmp_path / "flower-state"))
    return Settings(_environ={}, flower=values).flower


def launch(settings: FlowerSettings, environ: dict[str, str] | None = None, **kw: object):
    return flower_launch(settings, app="proj", environ=environ or {}, **kw)  # type: ignore[arg-type]


def options(argv: tuple[str, ...]) -> list[str]:
    return list(argv[argv.index("flower") + 1 :])


def test_default_preset_argv(tmp_path: Path) -> None:
    result = launch(flower(tmp_path), {BASIC_AUTH_ENV: "ops:pw"}, celery=("celery",))
    assert result.argv[:4] == ("celery", "-A", "proj", "flower")
    assert options(result.argv) == [
        "--address=127.0.0.1",
        "--port=5555",
        "--persistent=True",
        "--read_only=True",
        f"--db={tmp_path / 'flower-state'}",
        "--state_save_interval=60000",
        "--purge_offline_workers=3600",
        "--enable_events=True",
    ]
    assert result.auth == "basic"
    assert result.notices == ()


def test_settings_shape_the_argv(tmp_path: Path) -> None:
    settings = flower(
        tmp_path,
        url_prefix="/ops/flower/",
        persistent=False,
        purge_offline_workers_s=None,
        read_only=False,
        enable_events=False,
        port=8080,
    )
    argv = launch(
        settings, {BASIC_AUTH_ENV: "ops:pw"}, global_options=["--broker=redis://r/0"]
    ).argv
    assert argv[argv.index("flower") - 1] == "--broker=redis://r/0"
    opts = options(argv)
    assert "--url_prefix=ops/flower" in opts
    assert "--port=8080" in opts
    assert "--persistent=False" in opts
    assert "--read_only=False" in opts
    assert "--enable_events=False" in opts
    assert not [o for o in opts if o.startswith(("--db", "--purge_offline", "--state_save"))]


def test_credentials_go_in_the_environment_never_in_argv(tmp_path: Path) -> None:
    secret = tmp_path / "users"
    secret.write_text("# ops team\n\nalice:s3cr:et\n  bob:pw2  \n")
    secret.chmod(0o600)
    settings = flower(tmp_path, basic_auth_file=str(secret))
    environ = {BASIC_AUTH_ENV: "carol:pw3", "PROMETHEUS_MULTIPROC_DIR": "/tmp/w", "KEEP": "1"}
    environ |= {"FLOWER_BROKER_API": "http://guest:pw4@rabbit/api/", "FLOWER_MAX_TASKS": "9"}
    result = launch(settings, environ)
    assert result.env[BASIC_AUTH_ENV] == "carol:pw3,alice:s3cr:et,bob:pw2"
    assert result.env["KEEP"] == "1"
    assert "PROMETHEUS_MULTIPROC_DIR" not in result.env  # Flower must not write a worker's
    shown = " ".join(result.argv) + result.describe()
    for password in ("pw3", "s3cr:et", "pw2", "pw4"):
        assert password not in shown
    assert f"env {BASIC_AUTH_ENV}=********" in result.describe()
    assert "env FLOWER_MAX_TASKS=9" in result.describe()


def test_readable_secret_file_gets_a_notice(tmp_path: Path) -> None:
    secret = tmp_path / "users"
    secret.write_text("ops:pw\n")
    secret.chmod(0o644)
    result = launch(flower(tmp_path, basic_auth_file=str(secret)))
    assert any("chmod 600" in n for n in result.notices)


@pytest.mark.parametrize(
    ("text", "lines", "message"),
    [
        ("ops-no-colon", True, "line 1: expected user:password"),
        ("# c\n:pw", True, "line 2: expected user:password"),
        ("ops:", True, "password of user 'ops' is empty"),
        ("ops:a,b", True, "remove the comma"),
        ("# only a comment\n", True, "no user:password entry"),
        ("ops:pw,broken", False, "entry 2: expected user:password"),
    ],
)
def test_bad_credentials_name_the_entry_but_not_the_secret(
    text: str, lines: bool, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_credentials(text, source="src", lines=lines)
    assert "no-colon" not in str(caught.value)
    assert "broken" not in str(caught.value)


def test_bad_flower_basic_auth_env_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{BASIC_AUTH_ENV}, entry 1"):
        launch(flower(tmp_path), {BASIC_AUTH_ENV: "justapassword"})


def test_missing_secret_file_says_how_to_fix(tmp_path: Path) -> None:
    settings = flower(tmp_path, basic_auth_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"nope does not exist.*--generate-credentials"):
        launch(settings)


@pytest.mark.parametrize("environ", [{}, {BASIC_AUTH_ENV: "  "}])
def test_no_auth_is_refused_with_every_way_to_fix_it(tmp_path: Path, environ) -> None:
    with pytest.raises(ConfigError) as caught:
        launch(flower(tmp_path), environ)
    message = str(caught.value)
    for hint in (BASIC_AUTH_ENV, "--basic-auth-file", "FLOWER_OAUTH2_KEY", "--allow-insecure"):
        assert hint in message


def test_insecure_only_when_asked_and_loudly(tmp_path: Path) -> None:
    result = launch(flower(tmp_path, allow_insecure=True), {BASIC_AUTH_ENV: ""})
    assert result.auth == "none"
    assert BASIC_AUTH_ENV not in result.env  # an empty list would lock everyone out
    assert any("WITHOUT authentication" in n for n in result.notices)


@pytest.mark.parametrize(
    ("address", "public"),
    [("127.0.0.1", False), ("::1", False), ("localhost", False), ("0.0.0.0", True)],
)
def test_public_address_warns_about_unauthenticated_metrics(tmp_path, address, public) -> None:
    result = launch(flower(tmp_path, address=address), {BASIC_AUTH_ENV: "ops:pw"})
    assert any("/metrics and /healthcheck" in n for n in result.notices) is public


def test_oauth_from_settings_with_secrets_from_env(tmp_path: Path) -> None:
    settings = flower(tmp_path, auth=".*@example.com", auth_provider="google")
    result = launch(settings, dict(OAUTH_ENV))
    assert result.auth == "oauth"
    opts = options(result.argv)
    assert "--auth=.*@example.com" in opts
    assert "--auth_provider=flower.views.auth.GoogleAuth2LoginHandler" in opts
    assert "client-secret-xyz" not in result.describe() + " ".join(result.argv)
    assert result.env["FLOWER_OAUTH2_SECRET"] == "client-secret-xyz"


def test_oauth_from_env_only_is_resolved_and_checked(tmp_path: Path) -> None:
    environ = {**OAUTH_ENV, "FLOWER_AUTH": "a@x.com|b@x.com", "FLOWER_AUTH_PROVIDER": "github"}
    assert "--auth_provider=flower.views.auth.GithubLoginHandler" in options(
        launch(flower(tmp_path), environ).argv
    )
    with pytest.raises(ConfigError, match=r"needs both"):
        launch(flower(tmp_path), {**OAUTH_ENV, "FLOWER_AUTH_PROVIDER": "github"})
    with pytest.raises(ConfigError, match="FLOWER_OAUTH2_SECRET"):
        launch(
            flower(tmp_path),
            {"FLOWER_AUTH": ".*@x.com", "FLOWER_AUTH_PROVIDER": "okta", "FLOWER_OAUTH2_KEY": "k"},
        )


def test_oauth_settings_must_come_in_pairs() -> None:
    with pytest.raises(ConfigError, match=r"flower\.auth .*go together"):
        Settings(_environ={}, flower={"auth_provider": "google"})


@pytest.mark.parametrize(
    "pattern",
    [
        ".*@example.com",
        "a@x.com|b@x.com",
        "ops@example.com",
        ".*@example\\.com$",
        "*@example.com",
        ".*@.*.com",
        ".*@x.com|a@x.com",
        "a.*b.*@x.com",
        "",
    ],
)
def test_auth_pattern_check_is_stricter_than_flower(pattern: str) -> None:
    """Whatever the kit accepts, Flower 2.2 accepts and it can match someone."""
    from flower.utils.authentication import authenticate, validate_auth_option

    if auth_pattern_problem(pattern) is None:
        assert validate_auth_option(pattern)
        sample = pattern.split("|")[0].replace(".*", "someone")
        assert authenticate(pattern, sample)
    elif not validate_auth_option(pattern):
        assert auth_pattern_problem(pattern)  # Flower would refuse to start: so do we


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("--basic_auth=ops:leak", "visible to every user"),
        ("--basic-auth=ops:leak", "visible to every user"),
        ("--oauth2_secret=leak", "visible to every user"),
        ("--broker_api=http://guest:leak@rabbit:15672/api/", "visible to every user"),
        ("--port=1", "set by the kit"),
        ("--url-prefix=x", "set by the kit"),
    ],
)
def test_extra_arguments_may_not_carry_secrets_or_fight_the_preset(tmp_path, arg, message):
    with pytest.raises(ConfigError, match=message) as caught:
        launch(flower(tmp_path), {BASIC_AUTH_ENV: "ops:pw"}, extra=[arg])
    assert "leak" not in str(caught.value)


def test_extra_arguments_pass_through(tmp_path: Path) -> None:
    result = launch(flower(tmp_path), {BASIC_AUTH_ENV: "ops:pw"}, extra=["--max_tasks=500"])
    assert result.argv[-1] == "--max_tasks=500"


def test_generated_login_without_file_lives_in_env_only(tmp_path: Path) -> None:
    result = launch(flower(tmp_path), {}, generate=True)
    assert result.generated is not None
    user, _, password = result.generated.partition(":")
    assert user == "admin"
    assert len(password) == 24
    assert "," not in password
    assert result.env[BASIC_AUTH_ENV] == result.generated
    assert password not in " ".join(result.argv) + result.describe()


def test_generated_login_is_written_once_mode_600(tmp_path: Path) -> None:
    secret = tmp_path / "users"
    result = launch(flower(tmp_path, basic_auth_file=str(secret)), {}, generate=True)
    assert secret.read_text() == f"{result.generated}\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="already exists"):
        launch(flower(tmp_path, basic_auth_file=str(secret)), {}, generate=True)
    assert secret.read_text() == f"{result.generated}\n"  # not overwritten


def test_generated_login_not_written_when_another_check_fails(tmp_path: Path) -> None:
    secret = tmp_path / "users"
    with pytest.raises(ConfigError):
        launch(flower(tmp_path, basic_auth_file=str(secret)), {}, generate=True, extra=["--port=1"])
    assert not secret.exists()


def test_state_directory_must_be_writable(tmp_path: Path) -> None:
    settings = flower(tmp_path, db=str(tmp_path / "missing-dir" / "state"))
    with pytest.raises(ConfigError, match=r"missing-dir does not exist.*persistent = false"):
        launch(settings, {BASIC_AUTH_ENV: "ops:pw"})
    launch(settings.model_copy(update={"persistent": False}), {BASIC_AUTH_ENV: "ops:pw"})


def test_task_events_setting_turns_on_both_celery_event_keys() -> None:
    default = Settings(_environ={}).celery_conf()
    assert "worker_send_task_events" not in default
    assert "task_send_sent_event" not in default
    conf = Settings(_environ={}, flower={"task_events": True}).celery_conf()
    assert conf["worker_send_task_events"] is True
    assert conf["task_send_sent_event"] is True


def test_url_prefix_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"flower\.url_prefix 'a b'"):
        Settings(_environ={}, flower={"url_prefix": "a b"})


@pytest.fixture
def cli_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    (tmp_path / "flowerproj.py").write_text(
        "from celery_kit import make_app\n"
        "app = make_app('flowerproj', broker_url='redis://127.0.0.1:6399/0')\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in list(os.environ):
        if name.startswith(("FLOWER_", "CELERY_KIT_")):
            monkeypatch.delenv(name)
    return CliRunner()


def test_cli_without_auth_exits_1_and_says_how(cli_app: CliRunner) -> None:
    result = cli_app.invoke(main, ["-A", "flowerproj:app", "flower"])
    assert result.exit_code == 1
    assert "without authentication" in result.output
    assert "--basic-auth-file" in result.output


def test_cli_dry_run_shows_the_command_with_secrets_masked(cli_app, monkeypatch) -> None:
    monkeypatch.setenv(BASIC_AUTH_ENV, "ops:hunter2")
    args = ["-A", "flowerproj:app", "flower", "--dry-run", "--port", "5601", "--address", "::"]
    result = cli_app.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "-m celery -A flowerproj:app flower --address=:: --port=5601" in result.output
    assert f"env {BASIC_AUTH_ENV}=********" in result.output
    assert "hunter2" not in result.output
    assert "/metrics and /healthcheck" in result.output  # notice: not a loopback address


def test_cli_allow_insecure_flag(cli_app: CliRunner) -> None:
    result = cli_app.invoke(
        main, ["-A", "flowerproj:app", "flower", "--allow-insecure", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "auth: none" in result.output


def test_cli_rejects_generate_with_dry_run_and_bad_ports(cli_app: CliRunner) -> None:
    base = ["-A", "flowerproj:app", "flower"]
    assert cli_app.invoke(main, [*base, "--generate-credentials", "--dry-run"]).exit_code == 2
    assert cli_app.invoke(main, [*base, "--port", "0", "--dry-run"]).exit_code == 2
