"""The shipped config profiles load, and default.toml documents every setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from celery_kit import Settings
from celery_kit.config.schema import _dict_value_model, _model_of

CONFIGS = Path(__file__).parents[3] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_profile_loads(path: Path) -> None:
    Settings(_config=path, _environ={})


def test_default_toml_equals_builtin_defaults() -> None:
    from_file = Settings(_config=CONFIGS / "default.toml", _environ={})
    assert from_file.celery_conf() == Settings(_environ={}).celery_conf()


def _leaf_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        if sub is not None and _dict_value_model(field.annotation) is None:
            out += _leaf_fields(sub, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_default_toml_mentions_every_setting() -> None:
    text = (CONFIGS / "default.toml").read_text()
    missing = []
    for path in _leaf_fields(Settings):
        *sections, key = path.split(".")
        section_ok = all(
            re.search(rf"^\[{re.escape('.'.join(sections[: i + 1]))}[\].]", text, re.M)
            for i in range(len(sections))
        )
        key_ok = re.search(rf"^#? ?{re.escape(key)} = ", text, re.M) or re.search(
            rf"^\[{re.escape(path)}\]", text, re.M
        )
        if not (section_ok and key_ok):
            missing.append(path)
    assert missing == [], "document these in configs/default.toml"
