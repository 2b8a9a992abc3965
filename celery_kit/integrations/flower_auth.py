"""Flower credentials: ``user:password`` lists and files, generated logins, OAuth email patterns.

Rules follow Flower 2.2's source: ``flower/command.py`` (``FLOWER_*`` variables, lists split
on commas) and ``flower/utils/authentication.py`` (the ``--auth`` pattern syntax).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from celery_kit.config.operations import auth_pattern_problem
from celery_kit.exceptions import ConfigError

__all__ = [
    "BASIC_AUTH_ENV",
    "GENERATED_USER",
    "auth_pattern_problem",
    "generate_credential",
    "parse_credentials",
    "read_basic_auth_file",
    "write_basic_auth_file",
]

#: Flower applies every ``FLOWER_<OPTION>`` variable itself (``apply_env_options``);
#: ``basic_auth`` is a list option, so Flower splits this one on commas.
BASIC_AUTH_ENV = "FLOWER_BASIC_AUTH"
#: The user name ``--generate-credentials`` creates.
GENERATED_USER = "admin"


def parse_credentials(text: str, *, source: str, lines: bool) -> list[str]:
    """Split and check ``user:password`` credentials (never echoing a password).

    Args:
        text: The credentials: one per line (``lines=True``) or comma-separated.
        source: Where they came from, named in error messages.
        lines: File format (``#`` comments and blank lines allowed) or Flower's list.

    Raises:
        ConfigError: an entry lacks ``user:``, a password is empty, or has a comma (Flower
            splits its list on commas, so the password would be cut in two).
    """
    entries = text.splitlines() if lines else text.split(",")
    found: list[str] = []
    for number, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if lines and (not entry or entry.startswith("#")):
            continue
        user, colon, password = entry.partition(":")
        where = f"{source}, {'line' if lines else 'entry'} {number}"
        if not colon or not user.strip():
            raise ConfigError(
                f"{where}: expected user:password (a user name, a colon, the password)"
            )
        if not password:
            raise ConfigError(f"{where}: the password of user {user!r} is empty")
        if "," in entry:
            raise ConfigError(
                f"{where}: remove the comma from user {user!r}'s password (Flower splits"
                f" {BASIC_AUTH_ENV} on commas)"
            )
        found.append(entry)
    if not found:
        raise ConfigError(f"{source}: no user:password entry found")
    return found


def read_basic_auth_file(path: str | os.PathLike[str]) -> tuple[list[str], str | None]:
    """Read a ``user:password`` file; return the credentials and a permission warning.

    Raises:
        ConfigError: the file is missing, unreadable, or malformed.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        mode = file.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(
            f"basic auth file {file} does not exist; create it with user:password lines"
            " (mode 600), fix flower.basic_auth_file / --basic-auth-file, or run"
            " `kit flower --generate-credentials` to create it"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"basic auth file {file} cannot be read: {exc}") from None
    warning = None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warning = f"basic auth file {file} is readable by other users; chmod 600 {file}"
    return parse_credentials(text, source=f"basic auth file {file}", lines=True), warning


def generate_credential(user: str = GENERATED_USER) -> str:
    """A new ``user:password`` with a random 24-character URL-safe password (no commas)."""
    return f"{user}:{secrets.token_urlsafe(18)}"


def write_basic_auth_file(path: str | os.PathLike[str], credential: str) -> None:
    """Create ``path`` (mode 600) holding ``credential``; never overwrite an existing file.

    Raises:
        ConfigError: the file exists or cannot be created.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"basic auth file {path} already exists; drop --generate-credentials to use it,"
            " or delete it to generate new credentials"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot create basic auth file {path}: {exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(credential + "\n")
