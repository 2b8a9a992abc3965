"""``kit flower``: Flower's command line and environment built from ``[flower]``, auth required.

Credentials travel in the environment (``FLOWER_BASIC_AUTH``, read by Flower itself), never
in argv, which ``ps`` shows to every user. Facts about Flower are from Flower 2.2's source.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from celery_kit.exceptions import ConfigError
from celery_kit.integrations.flower_auth import (
    BASIC_AUTH_ENV,
    auth_pattern_problem,
    generate_credential,
    parse_credentials,
    read_basic_auth_file,
    write_basic_auth_file,
)

if TYPE_CHECKING:
    from celery_kit.config.operations import FlowerSettings

__all__ = ["AUTH_PROVIDERS", "OAUTH_ENV", "SECRET_ENV", "FlowerLaunch", "flower_launch"]

#: OAuth client settings; Flower reads them from its options or these variables
#: (``extract_settings``). The kit requires the variables: the secret never goes in argv.
OAUTH_ENV = ("FLOWER_OAUTH2_KEY", "FLOWER_OAUTH2_SECRET", "FLOWER_OAUTH2_REDIRECT_URI")
#: ``--auth`` / ``--auth_provider`` given as variables instead of ``[flower]`` settings.
_AUTH_ENV, _PROVIDER_ENV = "FLOWER_AUTH", "FLOWER_AUTH_PROVIDER"
#: Short names of the login handlers Flower ships (``flower/views/auth.py``).
AUTH_PROVIDERS: dict[str, str] = {
    "google": "flower.views.auth.GoogleAuth2LoginHandler",
    "github": "flower.views.auth.GithubLoginHandler",
    "gitlab": "flower.views.auth.GitLabLoginHandler",
    "okta": "flower.views.auth.OktaLoginHandler",
}
#: Flower options that carry secrets: refused in extra arguments, since ``ps`` shows argv.
_SECRET_OPTIONS = frozenset(
    {"basic_auth", "oauth2_key", "oauth2_secret", "cookie_secret", "broker_api"}
)
#: Everything the kit derives from settings; extra arguments may not repeat these.
_PRESET_OPTIONS = frozenset(
    {"address", "port", "url_prefix", "persistent", "db", "state_save_interval"}
    | {"purge_offline_workers", "read_only", "enable_events", "auth", "auth_provider"}
)
#: Not passed to Flower: the credentials are re-set below; a worker's Prometheus
#: multiprocess directory would make Flower's own metrics appear in that worker's export.
_DROP_ENV = frozenset({BASIC_AUTH_ENV, "PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"})
#: ``FLOWER_*`` variables whose values ``describe`` never shows (credentials, secrets, the
#: broker API URL with its password).
SECRET_ENV = re.compile(r"AUTH|SECRET|PASS|KEY|TOKEN|API")
#: What ``describe`` shows instead of a secret.
_MASK = "********"


@dataclass(frozen=True)
class FlowerLaunch:
    """How to start Flower: argv (no secrets), the full environment, and what to tell the user.

    Attributes:
        argv: ``celery -A APP [global options] flower --…`` (no credentials in it).
        env: The complete environment of the Flower process.
        auth: ``"basic"``, ``"oauth"``, ``"basic+oauth"`` or ``"none"`` (insecure).
        notices: Warnings for stderr (public address, readable secret file, no auth).
        generated: The login made by ``generate=True``: the one secret the kit may print.
    """

    argv: tuple[str, ...]
    env: dict[str, str]
    auth: str
    notices: tuple[str, ...] = ()
    generated: str | None = None

    def describe(self) -> str:
        """The command line and the ``FLOWER_*`` variables it gets, secrets masked."""
        flower_env = sorted(k for k in self.env if k.startswith("FLOWER_"))
        lines = [shlex.join(self.argv), f"auth: {self.auth}"]
        lines += [f"env {k}={_MASK if SECRET_ENV.search(k) else self.env[k]}" for k in flower_env]
        return "\n".join(lines)


def _check_extra(extra: Sequence[str]) -> None:
    for arg in extra:
        name = arg.lstrip("-").partition("=")[0].replace("-", "_").lower()
        if name in _SECRET_OPTIONS:
            raise ConfigError(
                f"--{name} on the command line is visible to every user via ps; put"
                f" credentials in {BASIC_AUTH_ENV}, a --basic-auth-file, or FLOWER_"
                f"{name.upper()} in the environment"
            )
        if name in _PRESET_OPTIONS:
            raise ConfigError(
                f"--{name} is set by the kit from [flower]; change flower.* in the config"
                " (or CELERY_KIT_FLOWER__* in the environment) instead"
            )


def _basic_credentials(
    environ: Mapping[str, str], file: str | None, generated: str | None, notes: list[str]
) -> list[str]:
    creds: list[str] = []
    if environ.get(BASIC_AUTH_ENV, "").strip():
        creds += parse_credentials(environ[BASIC_AUTH_ENV], source=BASIC_AUTH_ENV, lines=False)
    if generated is not None:
        if file is not None and os.path.lexists(file):
            raise ConfigError(
                f"basic auth file {file} already exists; drop --generate-credentials to use"
                " it, or delete it to generate a new login"
            )
        return [*creds, generated]
    if file is not None:
        found, warning = read_basic_auth_file(file)
        creds += found
        notes += [warning] if warning else []
    return creds


def _oauth(settings: FlowerSettings, environ: Mapping[str, str]) -> tuple[str, str] | None:
    pattern = settings.auth or environ.get(_AUTH_ENV, "").strip() or None
    provider = settings.auth_provider or environ.get(_PROVIDER_ENV, "").strip() or None
    if pattern is None and provider is None:
        return None
    if pattern is None or provider is None:
        raise ConfigError(
            "OAuth needs both flower.auth (allowed emails, e.g. '.*@example.com') and"
            " flower.auth_provider (google, github, gitlab, okta): with only a provider"
            " Flower lets everyone in, with only emails nobody can log in"
        )
    if (problem := auth_pattern_problem(pattern)) is not None:
        raise ConfigError(problem)
    missing = [name for name in OAUTH_ENV if not environ.get(name, "").strip()]
    if missing:
        raise ConfigError(
            f"OAuth via {provider} needs {', '.join(missing)} in the environment (the"
            " client id, secret and this Flower's callback URL from the provider)"
        )
    return pattern, AUTH_PROVIDERS.get(provider, provider)


def _refusal(settings: FlowerSettings) -> ConfigError:
    return ConfigError(
        f"refusing to start Flower on {settings.address}:{settings.port} without"
        " authentication (anyone reaching it could read task arguments and results)."
        f" Configure one of:\n  - basic auth: put user:password in the environment variable"
        f" {BASIC_AUTH_ENV} (several: comma-separated), or put user:password lines in a"
        " mode-600 file and pass --basic-auth-file PATH (or set flower.basic_auth_file);"
        " --generate-credentials creates one;\n  - OAuth: set flower.auth (allowed emails)"
        f" and flower.auth_provider, and export {', '.join(OAUTH_ENV)};\n  - on a trusted"
        " network only: --allow-insecure (or flower.allow_insecure = true)."
    )


def _is_loopback(address: str) -> bool:
    try:
        return address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def flower_launch(
    settings: FlowerSettings,
    *,
    app: str,
    environ: Mapping[str, str],
    celery: Sequence[str] = ("celery",),
    global_options: Sequence[str] = (),
    extra: Sequence[str] = (),
    generate: bool = False,
) -> FlowerLaunch:
    """Build the Flower command for ``settings`` and check that it is safe to start.

    Args:
        settings: The ``[flower]`` settings (with any command-line overrides applied).
        app: The ``-A`` value Flower loads (``proj.celery:app``).
        environ: The environment to start from (``FLOWER_*`` credentials are read here).
        celery: How to run ``celery`` (e.g. ``(sys.executable, "-m", "celery")``).
        global_options: ``celery`` options placed before ``flower`` (``--broker=…``).
        extra: More Flower options; secrets and options the preset sets are refused.
        generate: Add a generated login; it is written to ``basic_auth_file`` (created,
            mode 600) if one is set, only after every other check passed.

    Raises:
        ConfigError: no authentication without ``allow_insecure``, malformed credentials,
            a missing secret file, incomplete OAuth, or a secret in ``extra``.
    """
    _check_extra(extra)
    notes: list[str] = []
    generated = generate_credential() if generate else None
    creds = _basic_credentials(environ, settings.basic_auth_file, generated, notes)
    oauth = _oauth(settings, environ)
    auth = "+".join(name for name, on in (("basic", creds), ("oauth", oauth)) if on) or "none"
    if auth == "none":
        if not settings.allow_insecure:
            raise _refusal(settings)
        notes.append("Flower runs WITHOUT authentication (allow_insecure): trusted networks only")
    if not _is_loopback(settings.address):
        notes.append(
            f"Flower listens on {settings.address}:{settings.port}: its /metrics and"
            " /healthcheck answer without authentication there (Flower's design); keep that"
            " port off public networks and publish the UI through a proxy (docs/flower.md)"
        )
    env = {k: v for k, v in environ.items() if k not in _DROP_ENV}
    if creds:
        env[BASIC_AUTH_ENV] = ",".join(creds)
    argv = (*celery, "-A", app, *global_options, "flower", *_options(settings, oauth), *extra)
    if generated is not None and settings.basic_auth_file is not None:
        write_basic_auth_file(settings.basic_auth_file, generated)
    return FlowerLaunch(argv, env, auth, tuple(notes), generated)


def _options(settings: FlowerSettings, oauth: tuple[str, str] | None) -> list[str]:
    options = [f"--address={settings.address}", f"--port={settings.port}"]
    if settings.url_prefix:
        options.append(f"--url_prefix={settings.url_prefix}")
    options += [f"--persistent={settings.persistent}", f"--read_only={settings.read_only}"]
    if settings.persistent:
        _check_db(settings.db)
        interval_ms = round(settings.state_save_interval_s * 1000)
        options += [f"--db={settings.db}", f"--state_save_interval={interval_ms}"]
    if settings.purge_offline_workers_s is not None:
        options.append(f"--purge_offline_workers={settings.purge_offline_workers_s}")
    options.append(f"--enable_events={settings.enable_events}")
    if oauth is not None:  # not secrets; the provider resolved from its short name
        options += [f"--auth={oauth[0]}", f"--auth_provider={oauth[1]}"]
    return options


def _check_db(db: str) -> None:
    directory = Path(db).parent.resolve()
    if not directory.is_dir() or not os.access(directory, os.W_OK):
        raise ConfigError(
            f"flower.db = {db!r}: directory {directory} does not exist or is not writable;"
            " point flower.db at a writable volume, or set flower.persistent = false"
        )
