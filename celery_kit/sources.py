"""Where settings come from: TOML file, environment and keyword arguments, merged.

Precedence is declared once, in :data:`LAYER_ORDER`. Every leaf value remembers its
origin so errors and ``kit config`` can say where a value came from, and unknown keys are
refused per source with the closest valid name.
"""

from __future__ import annotations

import difflib
import enum
import json
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from celery_kit.exceptions import ConfigError

__all__ = [
    "ENV_PREFIX",
    "FrameworkLayer",
    "Origin",
    "OriginKind",
    "load_layers",
    "load_toml",
    "validate_into",
]

#: Prefix of the kit's environment variables; ``__`` separates nesting levels.
ENV_PREFIX = "CELERY_KIT_"
_NEST = "__"
#: Names under the prefix that are not settings.
_RESERVED_ENV = ("CELERY_KIT_CONFIG", "CELERY_KIT_TEST_")
#: Celery's own variables, read below the kit's (``CELERY_KIT_BROKER_URL`` wins).
_CELERY_ENV = {"CELERY_BROKER_URL": ("broker_url",), "CELERY_RESULT_BACKEND": ("result_backend",)}

Path_ = tuple[str, ...]


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


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice")
        seen[key] = value
    return seen


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

        problems += _unknown_keys(model, data, (), in_file)
        layers.append((data, lambda _p: toml_origin))

    if framework is not None:

        def in_framework(path: Path_) -> str:
            return f"`{'.'.join(path)}` ({framework.origin_at(path)})"

        problems += _unknown_keys(model, framework.data, (), in_framework)
        layers.append((dict(framework.data), framework.origin_at))

    env_data, env_names, env_problems = _read_env(model, env)
    problems += env_problems
    layers.append((env_data, lambda p: Origin(OriginKind.ENV, env_names.get(p, ""))))

    kw = dict(kwargs)
    problems += _unknown_keys(model, kw, (), lambda p: f"`{'.'.join(p)}` (keyword argument)")
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
    for name, (field,) in _CELERY_ENV.items():
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
            shown = "" if err["type"] == "missing" else f" = {err.get('input')!r}"
            lines.append(f"`{'.'.join(path)}`{shown} ({where}): {msg}")
        raise ConfigError("invalid settings:\n  - " + "\n  - ".join(lines)) from None


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


# -- schema walking ----------------------------------------------------------------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside ``annotation`` (``X``, ``X | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _dict_value_model(annotation: Any) -> type[BaseModel] | None:
    """For ``dict[str, X]`` with X a model: X."""
    if typing.get_origin(annotation) is dict:
        args = typing.get_args(annotation)
        return _model_of(args[1]) if len(args) == 2 else None
    return None


def _is_complex(annotation: Any) -> bool:
    """Fields whose environment value is JSON (lists, dicts)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_complex(a) for a in typing.get_args(annotation) if a is not type(None))
    return origin in (list, dict, tuple, set, frozenset) or annotation in (list, dict)


def _unknown_keys(
    model: type[BaseModel], data: Mapping[str, Any], prefix: Path_, describe: Callable[[Path_], str]
) -> list[str]:
    problems: list[str] = []
    fields = model.model_fields
    for key, value in data.items():
        path = (*prefix, key)
        if key not in fields:
            problems.append(f"unknown setting {describe(path)}{_suggest(key, fields)}")
            continue
        annotation = fields[key].annotation
        sub = _model_of(annotation)
        item_model = _dict_value_model(annotation)
        if sub is not None and isinstance(value, Mapping):
            problems += _unknown_keys(sub, value, path, describe)
        elif item_model is not None and isinstance(value, Mapping):
            for name, item in value.items():
                if isinstance(item, Mapping):
                    problems += _unknown_keys(item_model, item, (*path, name), describe)
    return problems


def _suggest(key: str, valid: typing.Iterable[str], *, render: Callable[[str], str] = str) -> str:
    names = list(valid)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return f"; did you mean `{render(close[0])}`?"
    return f"; valid here: {', '.join(render(n) for n in sorted(names))}"


# -- environment -------------------------------------------------------------------------


def _read_env(
    model: type[BaseModel], environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[Path_, str], list[str]]:
    """Turn ``CELERY_KIT_A__B=v`` into ``{"a": {"b": v}}``; report unknown names."""
    data: dict[str, Any] = {}
    names: dict[Path_, str] = {}
    problems: list[str] = []

    def put(path: Path_, raw: str, name: str, annotation: Any) -> None:
        value: Any = raw
        if _is_complex(annotation):
            try:
                value = json.loads(raw, object_pairs_hook=_refuse_duplicate_keys)
            except json.JSONDecodeError:
                problems.append(f"{name} must be JSON (e.g. '[\"json\"]' or '{{}}'), got {raw!r}")
                return
            except ValueError as exc:  # a duplicate key: JSON would keep only the last
                problems.append(f"{name}: {exc}")
                return
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        names[path] = name

    for name, (field,) in _CELERY_ENV.items():
        if environ.get(name):
            put((field,), environ[name], name, str)

    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name.startswith(_RESERVED_ENV):
            continue
        parts = tuple(p.lower() for p in name[len(ENV_PREFIX) :].split(_NEST))
        resolved = _resolve_env_path(model, parts)
        if isinstance(resolved, str):
            problems.append(f"unknown setting {name} (environment){resolved}")
            continue
        put(parts, environ[name], name, resolved)
    return data, names, problems


def _resolve_env_path(model: type[BaseModel], parts: Path_) -> Any:
    """The annotation at ``parts`` in ``model``, or a suggestion string if unknown."""
    current: type[BaseModel] | None = model
    annotation: Any = None
    for depth, part in enumerate(parts):
        if current is None:
            # inside a free-form dict (celery_overrides, transport_options): any key goes
            return Any if typing.get_origin(annotation) is dict else _no_nesting(parts, depth)
        fields = current.model_fields
        if part not in fields:
            return _suggest(part, fields, render=_env_namer(parts[:depth]))
        annotation = fields[part].annotation
        current = _model_of(annotation)
        if current is None and _dict_value_model(annotation) is not None and depth + 1 < len(parts):
            return f"; set {ENV_PREFIX}{_NEST.join(p.upper() for p in parts[: depth + 1])} to JSON"
    return annotation


def _env_namer(parents: Path_) -> Callable[[str], str]:
    prefix = ENV_PREFIX + "".join(p.upper() + _NEST for p in parents)

    def render(name: str) -> str:
        return prefix + name.upper()

    return render


def _no_nesting(parts: Path_, depth: int) -> str:
    return f"; `{'.'.join(parts[:depth])}` has no sub-settings"
