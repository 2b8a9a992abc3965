"""Where settings come from: TOML file, environment and keyword arguments, merged.

Precedence is declared once, in :data:`LAYER_ORDER`. Every leaf value remembers its
origin so errors and ``kit config`` can say where a value came from, and unknown keys are
refused per source with the closest valid name.
"""

from __future__ import annotations

import enum
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from celery_kit.config.celery_keys import CELERY_ENV
from celery_kit.config.schema import ENV_PREFIX, Path_, read_env, unknown_keys
from celery_kit.exceptions import ConfigError
from celery_kit.masking import mask

__all__ = [
    "ENV_PREFIX",
    "FrameworkLayer",
    "Origin",
    "OriginKind",
    "load_layers",
    "load_toml",
    "validate_into",
]


class OriginKind(str, enum.Enum):
    """The kinds of place a Celery value can come from, as ``kit config`` shows them."""

    DEFAULT = "kit default"
    DERIVED = "derived"
    TOML = "toml"
    ENV = "env"
    KWARG = "kwarg"
    OVERRIDE = "override"
    DJANGO = "django setting"
    FLASK = "flask config"


@dataclass(frozen=True)
class Origin:
    """One place a value came from, e.g. env ``CELERY_KIT_TASKS__TIME_LIMIT_S``."""

    kind: OriginKind
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind.value} {self.detail}".strip()


#: Lowest first; later layers win. A framework's configuration (Django settings or Flask
#: config, at most one) sits between the TOML file and the environment.
LAYER_ORDER = (
    OriginKind.TOML,
    (OriginKind.DJANGO, OriginKind.FLASK),
    OriginKind.ENV,
    OriginKind.KWARG,
)


@dataclass(frozen=True)
class FrameworkLayer:
    """Settings read from a web framework's configuration (see ``celery_kit.integrations``).

    ``data`` has the shape of ``Settings`` (Celery keys already moved to kit fields or
    ``celery_overrides``); ``origins`` names the framework setting behind a path or any of
    its parents; ``default`` describes the rest.
    """

    data: Mapping[str, Any]
    origins: Mapping[Path_, Origin]
    default: Origin

    def origin_at(self, path: Path_) -> Origin:
        """The origin of the value at ``path`` (its own, a parent's, or ``default``)."""
        key = path
        while key:
            if key in self.origins:
                return self.origins[key]
            key = key[:-1]
        return self.default


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML file, turning every failure into a :class:`ConfigError`."""
    # deferred: which TOML parser depends on the Python version (tomllib from 3.11)
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    file = Path(path)
    try:
        with file.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except FileNotFoundError:
        raise ConfigError(
            f"config file {file} does not exist; fix the path given as config= or in"
            " CELERY_KIT_CONFIG"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        where = _quote_line(file, exc)
        raise ConfigError(f"config file {file} is not valid TOML: {exc}{where}") from None


def _quote_line(file: Path, exc: Exception) -> str:
    """The line a TOML error points at, so e.g. a key set twice is named in the message."""
    found = re.search(r"at line (\d+)", str(exc))
    lines = file.read_text(errors="replace").splitlines()
    if found is None or not 0 < int(found.group(1)) <= len(lines):
        return ""
    return f": `{lines[int(found.group(1)) - 1].strip()}`"


def load_layers(
    model: type[BaseModel],
    *,
    config: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None,
    kwargs: Mapping[str, Any],
    framework: FrameworkLayer | None = None,
) -> tuple[dict[str, Any], dict[Path_, Origin]]:
    """Read every source for ``model``, refuse unknown keys, and merge by precedence.

    Returns:
        The merged values and, for every leaf that a source set, its origin.
    """
    env = os.environ if environ is None else environ
    layers: list[tuple[dict[str, Any], Callable[[Path_], Origin]]] = []
    problems: list[str] = []

    config_path = config if config is not None else env.get("CELERY_KIT_CONFIG") or None
    if config_path is not None:
        data = load_toml(config_path)
        toml_origin = Origin(OriginKind.TOML, str(config_path))

        def in_file(path: Path_) -> str:
            return f"`{'.'.join(path)}` in {config_path}"

        problems += unknown_keys(model, data, (), in_file)
        layers.append((data, lambda _p: toml_origin))

    if framework is not None:

        def in_framework(path: Path_) -> str:
            return f"`{'.'.join(path)}` ({framework.origin_at(path)})"

        problems += unknown_keys(model, framework.data, (), in_framework)
        layers.append((dict(framework.data), framework.origin_at))

    env_data, env_names, env_problems = read_env(model, env)
    problems += env_problems
    layers.append((env_data, lambda p: Origin(OriginKind.ENV, env_names.get(p, ""))))

    kw = dict(kwargs)
    problems += unknown_keys(model, kw, (), lambda p: f"`{'.'.join(p)}` (keyword argument)")
    layers.append((kw, lambda _p: Origin(OriginKind.KWARG)))

    if problems:
        raise ConfigError("invalid settings:\n  - " + "\n  - ".join(problems))

    merged: dict[str, Any] = {}
    origins: dict[Path_, Origin] = {}
    for data, origin_of in layers:
        _merge(merged, data, (), origin_of, origins)
    _check_celery_env(env, merged, origins)
    return merged, origins


def _check_celery_env(
    env: Mapping[str, str], merged: Mapping[str, Any], origins: Mapping[Path_, Origin]
) -> None:
    """Celery lets ``CELERY_BROKER_URL``/``CELERY_RESULT_BACKEND`` beat any configured
    value (``celery/app/utils.py``); refuse a configuration it would silently ignore."""
    for name, field in CELERY_ENV.items():
        forced = env.get(name)
        if forced and field in merged and merged[field] != forced:
            raise ConfigError(
                f"{field} is set to a different value ({origins[(field,)]}) than {name},"
                f" and Celery always uses {name} when it is set: unset {name} or make the"
                " two agree"
            )


def validate_into(
    target: BaseModel,
    merged: Mapping[str, Any],
    origins: Mapping[Path_, Origin],
    init: Callable[..., None],
) -> None:
    """Run pydantic validation via ``init`` and turn its errors into one ConfigError."""
    try:
        init(**merged)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            path = tuple(str(part) for part in err["loc"])
            where = _origin_for(path, origins)
            msg = err["msg"].removeprefix("Value error, ")
            shown = "" if err["type"] == "missing" else f" = {_shown(err.get('input'), path)}"
            lines.append(f"`{'.'.join(path)}`{shown} ({where}): {msg}")
        raise ConfigError("invalid settings:\n  - " + "\n  - ".join(lines)) from None


def _shown(value: Any, path: Path_) -> str:
    """The offending value for a message, secrets hidden (keyed by the setting's name)."""
    return repr(mask(value, key=path[-1] if path else ""))


def _origin_for(path: Path_, origins: Mapping[Path_, Origin]) -> str:
    key = path
    while key:
        if key in origins:
            return f"from {origins[key]}"
        key = key[:-1]
    return "kit default"


def _merge(
    into: dict[str, Any],
    data: Mapping[str, Any],
    prefix: Path_,
    origin_of: Callable[[Path_], Origin],
    origins: dict[Path_, Origin],
) -> None:
    for key, value in data.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and value and isinstance(into.get(key), dict):
            _merge(into[key], value, path, origin_of, origins)
        elif isinstance(value, Mapping) and value:
            into[key] = {}
            _merge(into[key], value, path, origin_of, origins)
        else:
            into[key] = value
            origins[path] = origin_of(path)
