"""The settings schema walked for unknown keys, and the environment read against it."""

from __future__ import annotations

import difflib
import functools
import json
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from celery_kit.config.celery_keys import CELERY_ENV
from celery_kit.console import DEBUG_ENV

__all__ = ["ENV_PREFIX", "Path_", "read_env", "unknown_keys"]

#: Prefix of the kit's environment variables; ``__`` separates nesting levels.
ENV_PREFIX = "CELERY_KIT_"
_NEST = "__"
#: Names under the prefix that are not settings.
_RESERVED_ENV = ("CELERY_KIT_CONFIG", "CELERY_KIT_TEST_", DEBUG_ENV)

Path_ = tuple[str, ...]


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice")
        seen[key] = value
    return seen


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


def unknown_keys(
    model: type[BaseModel], data: Mapping[str, Any], prefix: Path_, describe: Callable[[Path_], str]
) -> list[str]:
    """Keys in ``data`` (recursively) that ``model`` has no field for, each with a hint."""
    problems: list[str] = []
    fields = model.model_fields
    for key, value in data.items():
        path = (*prefix, key)
        if key not in fields:
            hint = _suggest(key, fields, render=functools.partial(_dotted, prefix))
            problems.append(f"unknown setting {describe(path)}{hint}")
            continue
        annotation = fields[key].annotation
        sub = _model_of(annotation)
        item_model = _dict_value_model(annotation)
        if sub is not None and isinstance(value, Mapping):
            problems += unknown_keys(sub, value, path, describe)
        elif item_model is not None and isinstance(value, Mapping):
            for name, item in value.items():
                if isinstance(item, Mapping):
                    problems += unknown_keys(item_model, item, (*path, name), describe)
    return problems


def _dotted(prefix: Path_, name: str) -> str:
    """``tasks.time_limit_s``: a hint names the whole path, not only the last key."""
    return ".".join((*prefix, name))


def _suggest(key: str, valid: typing.Iterable[str], *, render: Callable[[str], str] = str) -> str:
    names = list(valid)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return f"; did you mean `{render(close[0])}`?"
    return f"; valid here: {', '.join(render(n) for n in sorted(names))}"


# -- environment -------------------------------------------------------------------------


def read_env(
    model: type[BaseModel], environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[Path_, str], list[str]]:
    """Turn ``CELERY_KIT_A__B=v`` into ``{"a": {"b": v}}``; report unknown names.

    Returns:
        The nested values, the variable behind each path, and the problems found.
    """
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

    for name, field in CELERY_ENV.items():
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
